"""Wall time of the offline demo pipeline, cold (a fresh project: tiny models built, every stage
run) and warm (a second `dvc repro` that must run nothing)."""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def bench_demo() -> dict:
    from evolinstruct.demo.project import dvc_env, run_demo

    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "demo"
        cold = run_demo(project, REPO)
        started = time.monotonic()
        subprocess.run(["dvc", "repro"], cwd=project, env=dvc_env(), check=True, capture_output=True)
        warm = time.monotonic() - started
    return {"cold_s": round(cold, 1), "noop_repro_s": round(warm, 1), "target_s": 600}


if __name__ == "__main__":
    print(json.dumps(bench_demo()))
