"""eliminate + merge_shuffle at scale: wall time and peak memory from 10k to 80k records, and
20k records of which 2% are one 20,000-character line (a data table or a minified literal, as
models write them) next to the clean 20k run (issue 24: dedup and decontamination stay linear).

The records are the Code Alpaca sample in ../shared/data (or generated instructions when it is
absent), replicated into "rounds" with perturbations (appended requirements, reworded phrases,
a share of exact and near copies) plus a few planted HumanEval problems, and decontaminated
against HumanEval and MBPP (the local sanitized file when present). Each stage runs as DVC would
run it, in its own process; peak memory is that process's max RSS.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from loopback import long_line  # noqa: E402  (the one-line answers the evolve bench's server writes too)

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"
SIZES = (10_000, 20_000, 40_000, 80_000)
EXTRAS = ["Additionally, handle empty input.", "The solution must run in O(n log n) time.",
          "Do not use any built-in sorting functions.", "Raise a ValueError for invalid arguments.",
          "Explain each step in a comment.", "Also return the number of operations performed."]


NAMES = ["solve", "compute", "process", "transform", "analyse", "build", "evaluate", "convert"]


def base_records() -> list[tuple[str, str]]:
    path = SHARED / "code_alpaca_2k.json"
    if path.exists():
        rows = json.loads(path.read_text())
        return [(r["instruction"] + (("\n" + r["input"]) if r["input"] else ""), r["output"]) for r in rows]
    rng = random.Random(0)
    verbs, things = ["Write", "Create", "Implement", "Design"], ["a function", "a class", "a script", "a query"]
    return [(f"{rng.choice(verbs)} {rng.choice(things)} that solves task {i} about lists of size {rng.randint(1, 99)}.",
             f"def task_{i}(xs):\n    return sorted(xs)[:{i % 7}]") for i in range(2000)]


def build_project(folder: Path, total: int, long_share: float = 0.0) -> None:
    from evolinstruct.plugins.benchmarks import HumanEval

    from evolinstruct.core.records import evolved_record, seed_record, write_records

    rng = random.Random(total)
    seeds = [seed_record(i, o) for i, o in base_records()]
    write_records(folder / "data/seed/seed.jsonl", seeds)
    planted = HumanEval().load({})[:5]
    rounds, pool, made, k = [], seeds, len(seeds), 0
    while made < total:
        k += 1
        attempts = []
        for parent in pool:
            if made >= total:
                break
            kind = rng.random()
            if kind < 0.03:  # exact copy of the parent, as weak evolvers produce
                instruction = parent.instruction.upper()
            elif kind < 0.06:  # near copy
                instruction = parent.instruction.replace(" a ", " one ", 1) + " Please."
            else:  # a fresh evolution: the root task with new requirements
                root = seeds[made % len(seeds)].instruction
                extras = " ".join(rng.sample(EXTRAS, 2))
                instruction = (f"{root} {extras} Name the function {rng.choice(NAMES)}_{made} and support up to "
                               f"{rng.randint(10, 10**6)} items.")
            output = parent.output + f"\n# revision {k}"
            if long_share and rng.random() < long_share:
                line = long_line(rng)
                instruction, output = f"{instruction} Use this table: {line}", line
            if made % 20000 == 7:
                problem = planted[(made // 20000) % len(planted)]
                instruction, output = "Solve:\n" + problem.prompt.replace("    ", "  "), problem.reference
            attempts.append(evolved_record(parent, k, "code_constraints", instruction, output, "bench", "m", "kept"))
            made += 1
        rounds.append(attempts)
        pool = attempts
    (folder / "data/evolved").mkdir(parents=True, exist_ok=True)
    for n, attempts in enumerate(rounds, start=1):
        write_records(folder / f"data/evolved/round_{n}.jsonl", attempts)
    (folder / "data/evolved/manifest.json").write_text(json.dumps({"rounds": len(rounds)}))
    options = {}
    benchmarks = ["humaneval"]
    if (SHARED / "mbpp/sanitized-mbpp.json").exists():
        benchmarks.append("mbpp")
        options = {"mbpp": {"path": str(SHARED / "mbpp/sanitized-mbpp.json"), "variant": "sanitized"}}
    params = {"rounds": len(rounds), "eliminate": {"benchmarks": benchmarks, "benchmark_options": options},
              "merge_shuffle": {"seed": 42}}
    (folder / "params.yaml").write_text(yaml.safe_dump(params))


def run_stage(folder: Path, stage: str) -> tuple[float, float]:
    """(seconds, peak RSS in MiB) of one stage process."""
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", f"evolinstruct.stages.{stage}"], cwd=folder,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{stage} failed: {proc.stderr.read().decode()[-2000:]}")
    proc.returncode = 0
    return seconds, usage.ru_maxrss / 1024


def bench_eliminate() -> dict:
    runs = []
    sizes = [int(x) for x in os.environ.get("BENCH_ELIMINATE_SIZES", "").split(",") if x] or SIZES
    cases = [(total, 0.0) for total in sizes] + [(20_000, 0.02)]
    for total, long_share in cases:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            build_project(folder, total, long_share)
            records = sum(1 for p in (folder / "data").rglob("*.jsonl") for _ in p.open())
            input_mib = sum(p.stat().st_size for p in (folder / "data").rglob("*.jsonl")) / 2**20
            eliminate_s, eliminate_mib = run_stage(folder, "eliminate")
            merge_s, merge_mib = run_stage(folder, "merge_shuffle")
            metrics = json.loads((folder / "reports/eliminate.json").read_text())  # the per-rule detail
        runs.append({
            "records": records, "long_line_share": long_share, "input_mib": round(input_mib, 1), "eliminate_s": round(eliminate_s, 2), "merge_shuffle_s": round(merge_s, 2),
            "total_s": round(eliminate_s + merge_s, 2), "peak_mib": round(max(eliminate_mib, merge_mib), 1),
            "kept": metrics["kept"], "rules": metrics["rules"], "decontamination": metrics["decontamination"],
        })
        print(f"bench eliminate: {runs[-1]}", file=sys.stderr)
    long = runs.pop()
    clean20k = next((r for r in runs if r["records"] == long["records"]), None)
    largest = runs[-1]
    return {
        "runs": runs,
        "long_lines_20k": {**long, "clean_20k_eliminate_s": clean20k["eliminate_s"] if clean20k else None,
                           "ratio_to_clean": round(long["eliminate_s"] / clean20k["eliminate_s"], 2) if clean20k else None,
                           "long_line_chars": 20_000},
        "target": {"records": 80_000, "max_s": 60, "max_mib": 2048},
        "within_target": largest["total_s"] < 60 and largest["peak_mib"] < 2048,
        "growth_10k_to_80k": {"time": round(largest["total_s"] / runs[0]["total_s"], 2),
                              "memory": round(largest["peak_mib"] / runs[0]["peak_mib"], 2)},
    }


if __name__ == "__main__":
    print(json.dumps(bench_eliminate()))
