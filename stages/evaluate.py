"""Stage `evaluate`: generate answers to each benchmark with the fine-tuned model, post-process
them, run them in the sandbox, and score pass@k (`evolinstruct.evaluate.run`, which documents the
protocols, the post-processing modes and the outputs).

Params: the `evaluate` group (and `rounds`, `evolve.family` to place the run in the ablation plot);
its section of plugins.lock.yaml records the benchmark plugins, their versions and params.
"""

from __future__ import annotations

from evolinstruct.core.params import read_params
from evolinstruct.core.stage import run_stage
from evolinstruct.evaluate.run import Ablation, evaluate
from evolinstruct.registry import prepare


def main() -> None:
    params = read_params()  # once: every value below comes from this one read
    registry = prepare("evaluate", params=params)  # the benchmark plugins, checked against the lock
    evaluate(params.evaluate, Ablation(params.rounds, params.evolve.family), registry)


if __name__ == "__main__":
    run_stage("evaluate", main)
