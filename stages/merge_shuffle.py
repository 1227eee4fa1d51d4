"""Stage `merge_shuffle`: the seed data plus the kept evolutions of every round, shuffled with a
fixed seed, as JSONL and as a Hugging Face `datasets` dataset for the SFT stage
(:mod:`evolinstruct.eliminate.merge`). Params: the `merge_shuffle` group.
"""

from __future__ import annotations

from evolinstruct.core.params import MergeShuffleParams, read_group
from evolinstruct.core.stage import run_stage
from evolinstruct.eliminate.merge import merge_shuffle


def main() -> None:
    merge_shuffle(read_group(MergeShuffleParams, "merge_shuffle"))


if __name__ == "__main__":
    run_stage("merge_shuffle", main)
