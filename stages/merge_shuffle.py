"""Stage `merge_shuffle`: the seed data plus the kept evolutions of every round, shuffled with a fixed
seed, written as JSONL and as a Hugging Face `datasets` dataset for the SFT stage. Per-round
statistics go to metrics and to plots/rounds.json (the complexity cascade, for `dvc plots`).

Params: the `merge_shuffle` group.
"""

from __future__ import annotations

import logging
import random
import re
from collections import defaultdict
from dataclasses import dataclass

from evolinstruct import paths
from evolinstruct.atomic import atomic_dir, write_json
from evolinstruct.params import read_group
from evolinstruct.records import Record, read_records, write_records
from evolinstruct.stage import run_stage

log = logging.getLogger(__name__)

_CODE = re.compile(r"```|^\s*(def|class|import|from|for|while|if|return)\b|[{};]\s*$", re.MULTILINE)


@dataclass
class MergeShuffleParams:
    seed: int = 42


def round_statistics(records: list[Record]) -> list[dict[str, float]]:
    """Per round: count, mean instruction length in words, and the share of instructions with code."""
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
        })
    return rows


def main() -> None:
    params = read_group(MergeShuffleParams, "merge_shuffle")
    merged = read_records(paths.SEED) + read_records(paths.KEPT)
    random.Random(params.seed).shuffle(merged)
    write_records(paths.TRAIN_JSONL, merged)

    import datasets

    table = datasets.Dataset.from_list(
        [{"id": r.id, "instruction": r.instruction, "output": r.output, "round": r.round} for r in merged]
    )
    with atomic_dir(paths.TRAIN_DATASET) as folder:
        table.save_to_disk(str(folder))
    stats = round_statistics(merged)
    write_json(paths.PLOTS / "rounds.json", stats)
    write_json(paths.METRICS / "merge_shuffle.json", {"records": len(merged), "rounds": {str(r["round"]): r for r in stats}})
    log.info("merged %d records from %d rounds into %s", len(merged), len(stats), paths.MERGED)


if __name__ == "__main__":
    run_stage("merge_shuffle", main)
