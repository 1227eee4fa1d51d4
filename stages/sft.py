"""Stage `sft`: fine-tune the base model on the merged set with TRL's SFTTrainer, in the paper's format.

Runs unchanged on a laptop CPU, one GPU, or many GPUs under `accelerate launch` (with the DeepSpeed
configs in configs/). Resumes from its last checkpoint when interrupted. Writes models/sft/ (weights,
tokenizer, training_config.json), metrics/sft.json and plots/sft_loss.json.

Params: the `sft` group. Paper defaults (WizardCoder): lr 2e-5, 3 epochs, max length 2048,
30 warmup steps, cosine schedule, global batch 512.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from evolinstruct.core import paths
from evolinstruct.core.atomic import write_json
from evolinstruct.core.errors import EvolError
from evolinstruct.core.params import read_group
from evolinstruct.train.model import (
    base_commit,
    check_packing,
    check_quantization,
    load_for_training,
    lora_config,
    save_merged,
)
from evolinstruct.core.stage import run_stage

log = logging.getLogger(__name__)


@dataclass
class SFTParams:
    #: A hub id (pin `revision` to a commit sha for reproducibility) or a local folder.
    base_model: str = "bigcode/starcoder"
    revision: str = ""
    learning_rate: float = 2e-5
    epochs: float = 3.0
    #: Stop after this many optimizer steps (-1 = run all epochs); for smoke tests and demos.
    max_steps: int = -1
    max_length: int = 2048
    warmup_steps: int = 30
    lr_scheduler: str = "cosine"
    #: Target global batch = per-device batch x gradient accumulation x world size; the stage derives
    #: the accumulation from it.
    global_batch_size: int = 512
    per_device_batch_size: int = 4
    weight_decay: float = 0.0
    #: "auto" = bf16 on GPUs that support it, else fp16 on GPU (the paper's), fp32 on CPU.
    precision: str = "auto"
    gradient_checkpointing: bool = True
    logging_steps: int = 10
    save_steps: int = 200
    seed: int = 42
    #: A DeepSpeed JSON config (configs/zero2.json, configs/zero3.json); empty = none.
    deepspeed: str = ""
    #: Attention kernel: "" = the model's default (sdpa), or flash_attention_2 (needed for packing).
    attn_implementation: str = ""
    #: Padding-free packing (no pad tokens, position ids restart per example). Refused unless
    #: attn_implementation is a flash-attention kernel, which keeps examples from attending to each other.
    packing: bool = False
    #: LoRA rank; 0 = full fine-tuning (the paper's). With LoRA, models/sft/ holds the merged model
    #: and the adapter in models/sft/adapter/.
    lora_r: int = 0
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: list[str] = field(default_factory=lambda: ["all-linear"])
    #: "none", or "4bit" / "8bit" for QLoRA (bitsandbytes, CUDA only; needs lora_r > 0).
    quantization: str = "none"


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def accumulation_steps(params: SFTParams, devices: int) -> int:
    """Gradient accumulation that brings per-device batch x devices closest to the global batch."""
    per_step = params.per_device_batch_size * devices
    return max(1, round(params.global_batch_size / per_step))


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def precision_flags(precision: str) -> dict[str, bool]:
    import torch

    if precision not in {"auto", "bf16", "fp16", "fp32"}:
        raise EvolError(f"params.yaml: sft.precision: expected auto, bf16, fp16 or fp32, got {precision!r}")
    if not torch.cuda.is_available():
        return {"use_cpu": True, "bf16": False, "fp16": False}
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


def checkpointing_flag(config_class: type, enabled: bool) -> dict[str, bool]:
    """transformers 5 renamed gradient_checkpointing to activation_checkpointing; use what exists."""
    fields = getattr(config_class, "__dataclass_fields__", {})
    return {"activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing": enabled}


def main() -> None:
    params = read_group(SFTParams, "sft")
    check_packing(params.packing, params.attn_implementation)  # before the heavy imports: fail fast
    check_quantization(params.quantization, params.lora_r)
    from evolinstruct.llm import hf

    hf.quiet_transformers()
    import datasets
    from transformers.trainer_utils import get_last_checkpoint
    from trl import SFTConfig, SFTTrainer

    from evolinstruct.train.data import tokenize_dataset

    devices = world_size()
    accumulation = accumulation_steps(params, devices)
    effective = params.per_device_batch_size * devices * accumulation
    log.info("global batch %d = %d per device x %d devices x %d accumulation steps (target %d)",
             effective, params.per_device_batch_size, devices, accumulation, params.global_batch_size)

    data_hash = file_hash(paths.TRAIN_JSONL)
    tokenizer = hf.load_tokenizer(params.base_model, params.revision)
    model = load_for_training(params.base_model, params.revision, params.attn_implementation, params.quantization)
    dataset = tokenize_dataset(datasets.load_from_disk(str(paths.TRAIN_DATASET), keep_in_memory=True), tokenizer, params.max_length)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # safe: labels are explicit, EOS is never masked

    resolved = {**asdict(params), "accumulation_steps": accumulation, "effective_global_batch_size": effective,
                "world_size": devices, "train_data_sha256": data_hash, "train_examples": len(dataset),
                "base_model_commit": base_commit(model)}
    run_id = hashlib.sha256(json.dumps(resolved, sort_keys=True).encode()).hexdigest()[:12]
    checkpoints = paths.STATE / "sft-checkpoints" / run_id
    config = SFTConfig(
        output_dir=str(checkpoints),
        per_device_train_batch_size=params.per_device_batch_size,
        gradient_accumulation_steps=accumulation,
        learning_rate=params.learning_rate,
        num_train_epochs=params.epochs,
        max_steps=params.max_steps,
        warmup_steps=params.warmup_steps,
        lr_scheduler_type=params.lr_scheduler,
        weight_decay=params.weight_decay,
        adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8,
        **checkpointing_flag(SFTConfig, params.gradient_checkpointing),
        logging_steps=params.logging_steps,
        save_steps=params.save_steps,
        save_total_limit=2,
        seed=params.seed,
        # Examples are tokenized and truncated already; padding-free mode refuses a max_length.
        max_length=None if params.packing else params.max_length,
        padding_free=params.packing,
        dataset_kwargs={"skip_prepare_dataset": True},
        report_to=[],
        deepspeed=params.deepspeed or None,
        disable_tqdm=True,
        **precision_flags(params.precision),
    )
    peft_config = (lora_config(params.lora_r, params.lora_alpha, params.lora_dropout, params.lora_target_modules)
                   if params.lora_r > 0 else None)
    trainer = SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=peft_config)
    last = get_last_checkpoint(str(checkpoints)) if checkpoints.exists() else None
    if last:
        log.info("resuming from %s", last)
    started = time.monotonic()
    result = trainer.train(resume_from_checkpoint=last)
    wall = time.monotonic() - started

    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)  # before any merge
    staging = paths.SFT_MODEL.with_name(".sft.staging")
    # Every rank takes part: ZeRO-3 gathers the 16-bit weights here.
    save_merged(trainer, staging, params.base_model, params.revision, params.quantization != "none")
    if not trainer.is_world_process_zero():
        return
    tokenizer.save_pretrained(str(staging))
    write_json(staging / "training_config.json", resolved)
    if paths.SFT_MODEL.exists():
        shutil.rmtree(paths.SFT_MODEL)
    os.replace(staging, paths.SFT_MODEL)

    steps = trainer.state.global_step
    mean_length = sum(len(ids) for ids in dataset["input_ids"]) / max(1, len(dataset))
    tokens = steps * min(effective, len(dataset)) * mean_length  # tokens the optimizer steps consumed
    losses = [{"step": e["step"], "loss": e["loss"]} for e in trainer.state.log_history if "loss" in e]
    write_json(paths.PLOTS / "sft_loss.json", losses)
    write_json(paths.METRICS / "sft.json", {
        "train_loss": round(result.training_loss, 6),
        "steps": steps,
        "wall_time_s": round(wall, 2),
        "tokens_per_s": round(tokens / wall, 1) if wall > 0 else 0.0,
        "effective_global_batch_size": effective,
        "train_examples": len(dataset),
        "trainable_parameters": trainable,
    })
    shutil.rmtree(checkpoints, ignore_errors=True)  # the run finished: its checkpoints are spent
    log.info("saved the fine-tuned model to %s after %d steps in %.1fs", paths.SFT_MODEL, steps, wall)


if __name__ == "__main__":
    run_stage("sft", main)
