"""The eliminate step: decide which records train the model, and say why every other one does not.

1. Evolutions the round filters rejected (or whose requests failed) are removed with their reasons.
2. Decontamination: every remaining record, seeds included, is checked against the prompts,
   reference solutions and test asserts of every problem of every benchmark plugin, all splits
   (`evolinstruct.eliminate.decontaminate`).
3. Deduplication across the seed and all rounds, exact and near (MinHash LSH), earliest record
   winning (`evolinstruct.eliminate.dedup`).

:func:`run` is the whole step as the `eliminate` stage runs it; the benchmarks come from the stage
(the plugin registry), so this package never imports the registry.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from evolinstruct.core import paths
from evolinstruct.core.atomic import write_json
from evolinstruct.core.errors import EvolError
from evolinstruct.core.params import EliminateParams
from evolinstruct.core.plugin_code import plugin_name
from evolinstruct.core.progress import Progress
from evolinstruct.core.records import Record, Rejection, read_records, round_path, write_records
from evolinstruct.eliminate.dedup import find_duplicates
from evolinstruct.evaluate.benchmarks import BenchmarkUnavailable, Problem, contamination_problems
from evolinstruct.llm.hf import check_option_paths

log = logging.getLogger(__name__)
DECONTAMINATION_REPORT = paths.ELIMINATED / "decontamination.json"
REPORT = paths.REPORTS / "eliminate.json"


def evolved_rounds() -> list[list[Record]]:
    manifest = json.loads((paths.EVOLVED / "manifest.json").read_text(encoding="utf-8"))
    return [read_records(round_path(paths.EVOLVED, k)) for k in range(1, manifest["rounds"] + 1)]


def removed(record: Record, rule: str, evidence: str) -> Record:
    return record.replace(status="eliminated", reasons=(*record.reasons, Rejection(rule, evidence)))


def load_benchmarks(params: EliminateParams, registered: Mapping[str, Any]) -> tuple[dict[str, list[Problem]], list[str]]:
    """Every problem of each benchmark to decontaminate against (all splits), by benchmark name,
    and the benchmarks skipped because their data is not available here.

    With the default (`benchmarks: []`, every registered benchmark) a benchmark whose data cannot
    be had offline is skipped, and one line names every skipped one. Benchmarks named in
    `eliminate.benchmarks` are required: all the unavailable ones are listed in one error, found
    in seconds (the hub is probed once; `HF_HUB_OFFLINE=1` skips it)."""
    names = params.benchmarks or sorted(registered)
    loaded, missing = {}, []
    for name in names:
        if name not in registered:
            raise EvolError(f"params.yaml: eliminate.benchmarks: no benchmark named '{name}'",
                            f"available: {', '.join(sorted(registered)) or 'none'} (`evol plugins`)")
        benchmark = registered[name]
        try:
            loaded[name] = contamination_problems(benchmark, params.benchmark_options.get(name, {}))
        except BenchmarkUnavailable:
            missing.append(name)
        except EvolError:
            raise
        except Exception as exc:
            log.error("%s failed to load:", plugin_name("benchmark", name), exc_info=exc)
            raise EvolError(
                f"params.yaml: eliminate.benchmarks: cannot load {plugin_name('benchmark', name)} "
                "for decontamination: "
                f"{type(exc).__name__}: {exc}",
                f"put a copy under data/benchmarks/ and set eliminate.benchmark_options.{name}.path",
            ) from None
    if missing and params.benchmarks:
        raise EvolError(
            f"params.yaml: eliminate.benchmarks: no data here (offline, not cached) for {', '.join(missing)}",
            "put each under data/benchmarks/ and set eliminate.benchmark_options.<name>.path "
            "(see docs/evaluation.md), or remove it from eliminate.benchmarks",
        )
    if missing:
        log.warning("decontaminating against %s; skipped (no data here, offline and not cached): %s. "
                    "To include them, put their files under data/benchmarks/ and set "
                    "eliminate.benchmark_options.<name>.path", ", ".join(loaded) or "nothing", ", ".join(missing))
    return loaded, missing


def decontaminate(records: list[Record], params: EliminateParams, registered: Mapping[str, Any]
                  ) -> tuple[list[Record], list[Record], dict]:
    """Split records into (clean, contaminated) and build the per-benchmark report."""
    from evolinstruct.eliminate.decontaminate import Decontaminator

    benchmarks, skipped = load_benchmarks(params, registered)
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
    for name in skipped:
        report[name] = {"skipped": "no data here (offline, not cached)", "problems": 0, "problems_hit": 0,
                        "records": []}
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


def eliminate(seeds: list[Record], rounds: list[list[Record]], params: EliminateParams,
              benchmarks: Mapping[str, Any]) -> tuple[list[Record], list[Record], dict]:
    """Return (kept records, removed records with reasons, decontamination report), in a stable order:
    seeds first, then each round in file order. `benchmarks` are the registered ones by name."""
    rejected = [r for attempts in rounds for r in attempts if r.status != "kept"]
    candidates = list(seeds) + [r for attempts in rounds for r in attempts if r.status == "kept"]
    report: dict = {}
    contaminated: list[Record] = []
    if params.decontaminate:
        candidates, contaminated, report = decontaminate(candidates, params, benchmarks)
    kept, duplicates = deduplicate(candidates, params)
    order = {r.id: i for i, r in enumerate(list(seeds) + [r for attempts in rounds for r in attempts])}
    dropped = sorted(rejected + contaminated + duplicates, key=lambda r: order.get(r.id, len(order)))
    return kept, dropped, report


def eliminate_report(kept: list[Record], dropped: list[Record], report: dict, seconds: float) -> dict:
    """The detail (reports/eliminate.json): counts per rule, per rule per round, per benchmark."""
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


#: The headline metric each removal rule counts towards (a round filter's rejection otherwise).
_HEADLINE_RULE = {"decontamination": "removed_contaminated", "exact_duplicate": "removed_duplicates",
                  "near_duplicate": "removed_duplicates"}


_HEADLINE_GROUPS = ("removed_by_filters", "removed_failed_requests", "removed_contaminated", "removed_duplicates")


def headline_group(record: Record) -> str:
    """The headline group a removed record counts in once, by its last (deciding) reason."""
    if record.status == "failed":
        return "removed_failed_requests"
    rule = record.reasons[-1].rule if record.reasons else ""
    return _HEADLINE_RULE.get(rule, "removed_by_filters")


def eliminate_metrics(kept: list[Record], dropped: list[Record]) -> dict[str, int]:
    """The few numbers `dvc metrics show` displays (metrics/eliminate.json): what was kept, what was
    removed, and what this stage's own rules removed (the round filters' and failed requests'
    removals are the evolve stage's `output_eliminated` and `output_failed`; all four groups are in
    plots/cascade.json)."""
    groups = Counter(headline_group(record) for record in dropped)
    return {"kept": len(kept), "removed": len(dropped), "removed_contaminated": groups["removed_contaminated"],
            "removed_duplicates": groups["removed_duplicates"]}


def write_plots(kept: list[Record], dropped: list[Record]) -> None:
    """The records through the cascade (per round: kept, and removed by headline group) and the
    rejects by rule, as DVC plot data and as PNGs that need no network to look at."""
    from evolinstruct.core.plots import horizontal_bars, stacked_bars

    rounds = sorted({r.round for r in kept} | {r.round for r in dropped})
    per_round = {k: Counter(["kept"] * sum(r.round == k for r in kept)) for k in rounds}
    for record in dropped:
        per_round[record.round][headline_group(record)] += 1
    columns = ("kept", *_HEADLINE_GROUPS)
    write_json(paths.PLOTS / "cascade.json", [{"round": k, **{c: per_round[k][c] for c in columns}} for k in rounds])
    stacked_bars(paths.PLOTS / "cascade.png", [str(k) for k in rounds],
                 {c: [per_round[k][c] for k in rounds] for c in columns},
                 title="Records through the cascade (round 0 = seed)", xlabel="round", ylabel="records")
    rules = Counter(reason.rule for record in dropped for reason in record.reasons[-1:])
    write_json(paths.PLOTS / "rejects.json", [{"reason": rule, "records": n} for rule, n in sorted(rules.items())])
    horizontal_bars(paths.PLOTS / "rejects.png", dict(rules) or {"none": 0},
                    title="Records removed, by deciding rule", xlabel="records")


def run(params: EliminateParams, benchmarks: Mapping[str, Any],
        versions: Callable[[Iterable[tuple[str, str]]], str] = lambda used: "") -> None:
    """The eliminate stage's work: read the seed and every round, eliminate, and write the kept and
    removed records, the decontamination report, the per-rule report, the metrics (with
    `versions(used objects)`, the plugins' "dist==version" list) and the plots."""
    started = time.monotonic()
    if params.decontaminate:
        check_option_paths("eliminate.benchmark_options", params.benchmark_options)
    seeds = read_records(paths.SEED)
    kept, dropped, report = eliminate(seeds, evolved_rounds(), params, benchmarks)
    write_records(paths.KEPT, kept)
    write_records(paths.REMOVED, dropped)
    write_json(DECONTAMINATION_REPORT, report)
    detail = eliminate_report(kept, dropped, report, time.monotonic() - started)
    write_json(REPORT, detail)
    metrics = eliminate_metrics(kept, dropped)
    metrics["plugins"] = versions(("benchmark", name) for name in report)
    write_json(paths.METRICS / "eliminate.json", metrics)
    write_plots(kept, dropped)
    log.info("kept %d records, removed %d (%s); see %s and %s", len(kept), len(dropped),
             ", ".join(f"{rule} {n}" for rule, n in detail["rules"].items()) or "none", paths.REMOVED, REPORT)
