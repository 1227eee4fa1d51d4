"""Stage `eliminate`: decide which records train the model, and say why every other one does not.

1. Evolutions the round filters rejected (or whose requests failed) are removed with their reasons.
2. Decontamination: every remaining record, seeds included, is checked against the prompts and
   reference solutions of every benchmark plugin (`evolinstruct.eliminate.decontaminate`).
3. Deduplication across the seed and all rounds, exact and near (MinHash LSH), earliest record
   winning (`evolinstruct.eliminate.dedup`).

Writes data/eliminated/kept.jsonl (seeds and evolutions that train the model),
data/eliminated/removed.jsonl (every removed record, with rule and evidence),
data/eliminated/decontamination.json (per benchmark: which records overlapped which problems,
with the overlapping text), and per-rule counts per round to metrics/eliminate.json.

Params: the `eliminate` group.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from evolinstruct.core import paths
from evolinstruct.core.atomic import write_json
from evolinstruct.evaluate.benchmarks import Problem
from evolinstruct.eliminate.dedup import find_duplicates
from evolinstruct.core.errors import EvolError
from evolinstruct.core.params import read_group
from evolinstruct.core.progress import Progress
from evolinstruct.core.records import Record, Rejection, read_records, round_path, write_records
from evolinstruct.registry import get_registry
from evolinstruct.core.stage import run_stage

log = logging.getLogger(__name__)
DECONTAMINATION_REPORT = paths.ELIMINATED / "decontamination.json"


@dataclass
class EliminateParams:
    #: Remove instructions equal to an earlier one after normalising whitespace and case.
    exact_dedup: bool = True
    #: Remove instructions whose estimated Jaccard similarity (word `shingle_words`-gram shingles, MinHash) to an
    #: earlier kept one is at least `near_dedup_threshold`.
    near_dedup: bool = True
    near_dedup_threshold: float = 0.8
    minhash_permutations: int = 128
    shingle_words: int = 3
    #: Remove records sharing a normalised word n-gram with a benchmark prompt or solution.
    decontaminate: bool = True
    decontamination_ngram: int = 13
    #: Benchmark texts shorter than this many words are not used (too generic to prove a leak).
    decontamination_min_words: int = 8
    #: Reference solutions count as leaked only through an overlap of this many words.
    decontamination_solution_ngram: int = 25
    #: Benchmarks to decontaminate against; empty = every registered benchmark plugin.
    benchmarks: list[str] = field(default_factory=list)
    #: Per-benchmark load options, as in `evaluate.benchmark_options` (e.g. a local MBPP file).
    benchmark_options: dict[str, dict[str, Any]] = field(default_factory=dict)


def evolved_rounds() -> list[list[Record]]:
    manifest = json.loads((paths.EVOLVED / "manifest.json").read_text(encoding="utf-8"))
    return [read_records(round_path(paths.EVOLVED, k)) for k in range(1, manifest["rounds"] + 1)]


def removed(record: Record, rule: str, evidence: str) -> Record:
    return record.replace(status="eliminated", reasons=(*record.reasons, Rejection(rule, evidence)))


def load_benchmarks(params: EliminateParams) -> dict[str, list[Problem]]:
    """The problems of each benchmark to decontaminate against, by benchmark name."""
    registry = get_registry()
    names = params.benchmarks or sorted(registry.benchmarks())
    loaded = {}
    for name in names:
        benchmark = registry.pick("benchmark", name)
        try:
            loaded[name] = benchmark.load(params.benchmark_options.get(name, {}))
        except EvolError:
            raise
        except Exception as exc:
            raise EvolError(
                f"params.yaml: eliminate.benchmarks: cannot load benchmark '{name}' for decontamination: "
                f"{type(exc).__name__}: {exc}",
                f"point eliminate.benchmark_options.{name}.path at a local copy, or leave it out of eliminate.benchmarks",
            ) from None
    return loaded


def decontaminate(records: list[Record], params: EliminateParams) -> tuple[list[Record], list[Record], dict]:
    """Split records into (clean, contaminated) and build the per-benchmark report."""
    from evolinstruct.eliminate.decontaminate import Decontaminator

    benchmarks = load_benchmarks(params)
    index = Decontaminator(benchmarks, params.decontamination_ngram, params.decontamination_min_words,
                           params.decontamination_solution_ngram)
    report: dict[str, dict[str, Any]] = {name: {"problems": len(problems), "problems_hit": 0, "records": []}
                                         for name, problems in benchmarks.items()}
    clean, dirty = [], []
    progress = Progress("decontaminate", len(records))
    found: list = []
    for start in range(0, len(records), 10000):
        found.extend(index.check_many([(r.instruction, r.output) for r in records[start : start + 10000]]))
        progress.advance(min(10000, len(records) - start))
    for record, overlaps in zip(records, found, strict=True):
        if not overlaps:
            clean.append(record)
            continue
        for o in overlaps:
            report[o.benchmark]["records"].append({
                "record_id": record.id, "round": record.round, "task_id": o.task_id, "benchmark_field": o.field,
                "record_field": o.record_field, "overlap": o.text,
            })
        evidence = "; ".join(f"{o.benchmark} {o.task_id} {o.field} in {o.record_field}: '{o.text[:200]}'"
                             for o in overlaps[:3])
        more = f" (+{len(overlaps) - 3} more)" if len(overlaps) > 3 else ""
        dirty.append(removed(record, "decontamination", evidence + more))
    for entry in report.values():
        entry["problems_hit"] = len({r["task_id"] for r in entry["records"]})
    return clean, dirty, report


def deduplicate(records: list[Record], params: EliminateParams) -> tuple[list[Record], list[Record]]:
    """Split records (in seed-then-round order) into (kept, duplicates pointing to what they repeat)."""
    duplicates = {
        d.index: d for d in find_duplicates(
            [r.instruction for r in records], exact=params.exact_dedup, near=params.near_dedup,
            threshold=params.near_dedup_threshold, permutations=params.minhash_permutations,
            shingle_size=params.shingle_words,
        )
    }
    kept, dropped = [], []
    for i, record in enumerate(records):
        d = duplicates.get(i)
        if d is None:
            kept.append(record)
            continue
        original = records[d.of]
        detail = "" if d.kind == "exact" else f", estimated Jaccard {d.similarity:.2f}"
        dropped.append(removed(record, f"{d.kind}_duplicate",
                               f"duplicate of {original.id} (round {original.round}{detail})"))
    return kept, dropped


def eliminate(seeds: list[Record], rounds: list[list[Record]], params: EliminateParams
              ) -> tuple[list[Record], list[Record], dict]:
    """Return (kept records, removed records with reasons, decontamination report), in a stable order:
    seeds first, then each round in file order."""
    rejected = [r for attempts in rounds for r in attempts if r.status != "kept"]
    candidates = list(seeds) + [r for attempts in rounds for r in attempts if r.status == "kept"]
    report: dict = {}
    contaminated: list[Record] = []
    if params.decontaminate:
        candidates, contaminated, report = decontaminate(candidates, params)
    kept, duplicates = deduplicate(candidates, params)
    order = {r.id: i for i, r in enumerate(list(seeds) + [r for attempts in rounds for r in attempts])}
    dropped = sorted(rejected + contaminated + duplicates, key=lambda r: order.get(r.id, len(order)))
    return kept, dropped, report


def eliminate_metrics(kept: list[Record], dropped: list[Record], report: dict, seconds: float) -> dict:
    per_round: dict[str, Counter[str]] = defaultdict(Counter)
    for record in dropped:
        for reason in record.reasons:
            per_round[str(record.round)][reason.rule] += 1
    for record in kept:
        per_round[str(record.round)]["kept"] += 1
    rules = Counter(reason.rule for record in dropped for reason in record.reasons)
    return {
        "kept": len(kept),
        "removed": len(dropped),
        "seconds": round(seconds, 2),
        "rules": dict(sorted(rules.items())),
        "rounds": {k: dict(sorted(v.items())) for k, v in sorted(per_round.items(), key=lambda kv: int(kv[0]))},
        "decontamination": {name: {"records": len({r["record_id"] for r in entry["records"]}),
                                   "problems_hit": entry["problems_hit"]} for name, entry in report.items()},
    }


def main() -> None:
    started = time.monotonic()
    params = read_group(EliminateParams, "eliminate")
    seeds = read_records(paths.SEED)
    kept, dropped, report = eliminate(seeds, evolved_rounds(), params)
    write_records(paths.KEPT, kept)
    write_records(paths.REMOVED, dropped)
    write_json(DECONTAMINATION_REPORT, report)
    metrics = eliminate_metrics(kept, dropped, report, time.monotonic() - started)
    write_json(paths.METRICS / "eliminate.json", metrics)
    log.info("kept %d records, removed %d (%s); see %s", len(kept), len(dropped),
             ", ".join(f"{rule} {n}" for rule, n in metrics["rules"].items()) or "none", paths.REMOVED)


if __name__ == "__main__":
    run_stage("eliminate", main)
