"""`make bench`: run the benchmarks and write their results to bench/results/.

demo: wall time of the offline demo pipeline, cold (a fresh project: tiny models built, every stage
run) and warm (a second `dvc repro` that must run nothing).
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


def main() -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    machine = {"python": platform.python_version(), "cpus": __import__("os").cpu_count(), "machine": platform.machine()}
    result = {"machine": machine, **bench_demo()}
    (RESULTS / "demo.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    sys.exit(main())
