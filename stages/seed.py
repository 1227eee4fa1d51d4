"""Stage `seed`: load the seed instructions (a local JSON/JSONL/Parquet file or `hf:<dataset id>`),
append a non-empty `input` to its instruction, and write data/seed/seed.jsonl.

Bad records, records over `seed.max_chars` and duplicates go to data/seed/rejects.jsonl with their
place and reason (evolinstruct/seed/ says how).
Params: the `seed` group. Outputs: data/seed/seed.jsonl, data/seed/rejects.jsonl,
metrics/seed.json (headline counts), reports/seed.json (counts by reason and field).
"""

from __future__ import annotations

from evolinstruct.core.params import SeedParams, read_group
from evolinstruct.core.stage import run_stage
from evolinstruct.seed.build import build_seed


def main() -> None:
    build_seed(read_group(SeedParams, "seed"))


if __name__ == "__main__":
    run_stage("seed", main)
