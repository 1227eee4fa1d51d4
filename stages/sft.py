"""Stage `sft`: fine-tune the base model on the merged set, in the paper's format, with TRL's
SFTTrainer (evolinstruct.train.run). Reads the `sft` params group once; on several GPUs (or with
DeepSpeed) it starts itself under accelerate, so dvc.yaml runs it unchanged. See docs/sft.md.

Params: the `sft` group. Paper defaults (WizardCoder): lr 2e-5, 3 epochs, max length 2048,
30 warmup steps, cosine schedule, global batch 512.
"""

from __future__ import annotations

from evolinstruct.core.params import SFTParams, read_group
from evolinstruct.core.stage import run_stage


def main() -> None:
    from evolinstruct.train.run import fine_tune

    fine_tune(read_group(SFTParams, "sft"))


if __name__ == "__main__":
    run_stage("sft", main)
