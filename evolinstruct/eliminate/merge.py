"""The merge_shuffle step: the seed data plus the kept evolutions of rounds 1..`rounds` (everything
in data/eliminated/kept.jsonl), shuffled with a fixed seed, written as JSONL and as a Hugging
Face `datasets` dataset for the SFT stage. The training set's size, in all and per round, goes
to metrics/merge_shuffle.json; per-round statistics (the complexity proxy below, instruction length,
code share) go to reports/merge_shuffle.json.

The complexity proxy of an instruction is the number of requirement markers it contains (words
and phrases that add a constraint: "must", "should", "ensure", "without", "at least", "handle",
"time complexity", "O(...)", ...) plus one per sentence; it rises when an evolution adds
constraints, which word count alone does not separate from verbosity.

:func:`merge_shuffle` is the whole step as the `merge_shuffle` stage runs it.
"""

from __future__ import annotations

import logging
import random
import re
from collections import defaultdict

from evolinstruct.core import paths
from evolinstruct.core.atomic import atomic_dir, write_json
from evolinstruct.core.params import MergeShuffleParams
from evolinstruct.core.records import Record, read_records, write_records

log = logging.getLogger(__name__)
REPORT = paths.REPORTS / "merge_shuffle.json"

# Linear in the text: `[ \t]*`, not `\s*`, so that neither pattern rescans a run of blank lines from
# each of its positions, and `O(...)` is bounded.
_CODE = re.compile(r"```|^[ \t]*(def|class|import|from|for|while|if|return)\b|[{};][ \t]*$", re.MULTILINE)
_REQUIREMENT = re.compile(
    r"\b(must|should|ensure|without|at least|at most|no more than|only|handle|additionally|also|"
    r"constraint|requirement|edge cases?|time complexity|space complexity|efficient|optimi[sz]e)\b|O\([^)\n]{0,40}\)",
    re.IGNORECASE,
)
_SENTENCE = re.compile(r"[.!?](\s|$)")


def complexity(instruction: str) -> int:
    """The complexity proxy: requirement markers plus sentences (see the module docstring)."""
    return len(_REQUIREMENT.findall(instruction)) + max(1, len(_SENTENCE.findall(instruction)))


def round_statistics(records: list[Record]) -> list[dict[str, float]]:
    """Per round: count, mean instruction length in words, share of instructions with code, and the
    mean complexity proxy."""
    by_round: dict[int, list[Record]] = defaultdict(list)
    for record in records:
        by_round[record.round].append(record)
    rows = []
    for k, group in sorted(by_round.items()):
        words = [len(r.instruction.split()) for r in group]
        rows.append({
            "round": k,
            "records": len(group),
            "mean_instruction_words": round(sum(words) / len(words), 2),
            "code_share": round(sum(1 for r in group if _CODE.search(r.instruction)) / len(group), 4),
            "mean_complexity": round(sum(complexity(r.instruction) for r in group) / len(group), 3),
        })
    return rows


def merge_shuffle(params: MergeShuffleParams) -> None:
    """The merge_shuffle stage's work: the kept records, shuffled with `params.seed`, written as JSONL
    and as a `datasets` dataset, with the training set's size and per-round statistics."""
    merged = read_records(paths.KEPT)  # seeds and kept evolutions, deduplicated and decontaminated
    random.Random(params.seed).shuffle(merged)
    write_records(paths.TRAIN_JSONL, merged)

    import datasets

    table = datasets.Dataset.from_list(
        [{"id": r.id, "instruction": r.instruction, "output": r.output, "round": r.round} for r in merged]
    )
    with atomic_dir(paths.TRAIN_DATASET) as folder:
        table.save_to_disk(str(folder))
    stats = round_statistics(merged)
    write_json(REPORT, {"train_records": len(merged), "rounds": {str(r["round"]): r for r in stats}})
    write_json(paths.METRICS / "merge_shuffle.json", {"train_records": len(merged)})
    log.info("merged %d records from %d rounds into %s", len(merged), len(stats), paths.MERGED)
