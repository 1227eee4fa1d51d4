"""Stage `eliminate`: decide which records train the model, and say why every other one does not
(:mod:`evolinstruct.eliminate.run`).

Writes data/eliminated/kept.jsonl (seeds and evolutions that train the model),
data/eliminated/removed.jsonl (every removed record, with rule and evidence),
data/eliminated/decontamination.json (per benchmark: which records overlapped which problems,
with the overlapping text), per-rule counts per round to reports/eliminate.json, and the headline
counts (kept; removed by filters, failed requests, decontamination, duplicates) to
metrics/eliminate.json.

Params: the `eliminate` group; its section of plugins.lock.yaml records the benchmark plugins it
decontaminates against, their versions and params.
"""

from __future__ import annotations

from evolinstruct.core.params import read_params
from evolinstruct.core.stage import run_stage
from evolinstruct.eliminate import run
from evolinstruct.registry import prepare


def main() -> None:
    params = read_params()
    registry = prepare("eliminate", params=params)
    run.run(params.eliminate, registry.benchmarks(), registry.used)


if __name__ == "__main__":
    run_stage("eliminate", main)
