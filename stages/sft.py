"""Stage `sft`: fine-tune the base model on the merged set, in the paper's format, at the speed the
hardware allows.

Each optimizer step sees `global_batch_size` examples, split into micro-batches by a token budget;
by default the examples of a micro-batch are concatenated without padding, with an attention
kernel that the stage has checked keeps them apart (evolinstruct.train.model); the loss is
normalised by the response tokens of the whole global batch (evolinstruct.train.batching,
evolinstruct.train.trainer). Runs unchanged on a laptop CPU, one GPU, or many GPUs under
`accelerate launch` (with the DeepSpeed configs in configs/). Resumes from its last checkpoint when
interrupted. Writes models/sft/ (weights, tokenizer, training_config.json), metrics/sft.json (a few
headline numbers), reports/sft.json (the detail) and plots/sft_loss.json (with a PNG twin).

Params: the `sft` group. Paper defaults (WizardCoder): lr 2e-5, 3 epochs, max length 2048,
30 warmup steps, cosine schedule, global batch 512.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from evolinstruct.core import paths
from evolinstruct.core.atomic import write_json
from evolinstruct.core.errors import EvolError
from evolinstruct.core.params import SFTParams, read_group
from evolinstruct.core.plots import line_plot
from evolinstruct.core.stage import run_stage
from evolinstruct.train.model import (
    base_commit,
    check_quantization,
    load_for_training,
    lora_config,
    save_merged,
)

log = logging.getLogger(__name__)


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


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


def checkpointing_flag(config_class: type, enabled: bool) -> dict[str, Any]:
    """transformers 5 renamed gradient_checkpointing to activation_checkpointing; use what exists.
    Non-reentrant checkpointing also works with LoRA's frozen inputs."""
    fields = getattr(config_class, "__dataclass_fields__", {})
    name = "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"
    return {name: enabled, f"{name}_kwargs": {"use_reentrant": False} if enabled else None}


def last_complete_checkpoint(folder: Path) -> str | None:
    """The newest checkpoint whose trainer state was written (the Trainer writes it last), so that a
    run killed while saving a checkpoint resumes from the one before instead of failing."""
    def step(path: Path) -> int:
        tail = path.name.rsplit("-", 1)[-1]
        return int(tail) if tail.isdigit() else -1

    for candidate in sorted(folder.glob("checkpoint-*"), key=step, reverse=True):
        try:
            json.loads((candidate / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        return str(candidate)
    return None


def check_params(params: SFTParams) -> None:
    """What the schema cannot check (installed packages, combinations), before anything heavy loads."""
    if params.liger_kernels and importlib.util.find_spec("liger_kernel") is None:
        raise EvolError("params.yaml: sft.liger_kernels: the liger-kernel package is not installed",
                        "pip install liger-kernel, or set sft.liger_kernels: false")
    check_quantization(params.quantization, params.lora_r)


def pick_attention(params: SFTParams, config: Any, device: str, dtype: Any) -> str | None:
    """The attention implementation for padding-free batches, or None for the padded fallback."""
    from evolinstruct.train.model import (
        attention_candidates,
        choose_attention,
        packed_logit_gaps,
        probe_model,
    )
    from evolinstruct.train.trainer import padding_free_collator

    examples = [[7, 8, 9, 10, 11], list(range(20, 33)), [40, 41, 42, 43, 44, 45, 46, 47, 48]]

    def probe(name: str) -> tuple[float, float]:
        model = probe_model(config, name, device, dtype)
        return packed_logit_gaps(model, examples, padding_free_collator(name.startswith("flash")), device)

    return choose_attention(attention_candidates(params.attn_implementation, device.startswith("cuda")), probe)


def main() -> None:
    params = read_group(SFTParams, "sft")
    check_params(params)  # before the heavy imports: fail fast
    from evolinstruct.llm import hf

    # A missing local path, or a hub model not cached while HF_HUB_OFFLINE=1, stops here, at once.
    params.base_model = hf.check_source("sft.base_model", params.base_model, params.revision)
    hf.quiet_transformers()
    import torch
    from accelerate import PartialState
    from transformers import AutoConfig, TrainingArguments

    from evolinstruct.llm.hf import revision_kwargs
    from evolinstruct.train.data import cached_tokenized
    from evolinstruct.train.trainer import (
        BudgetTrainer,
        StepData,
        padded_collator,
        padding_free_collator,
        plan_memory,
    )

    # cpu=True on a CPU machine, or torchrun/accelerate's processes would not form one job there
    state = PartialState(cpu=not torch.cuda.is_available())
    devices = state.num_processes
    precision = precision_flags(params.precision)
    half = precision.get("bf16") or precision.get("fp16")
    dtype = torch.bfloat16 if precision.get("bf16") else torch.float16 if half else torch.float32

    data_hash = file_hash(paths.TRAIN_JSONL)
    tokenizer = hf.load_tokenizer(params.base_model, params.revision)
    with state.main_process_first():  # one rank tokenizes (or reads the cache), the others then read it
        dataset, lengths, cached = cached_tokenized(paths.TRAIN_DATASET, data_hash, tokenizer, params.max_length,
                                                    paths.STATE / "sft-tokenized")
    log.info("tokenized %d examples%s; %s", lengths.examples_in, " (from the cache)" if cached else "",
             lengths.line(params.max_length))
    if len(dataset) == 0:
        raise EvolError(f"{paths.TRAIN_DATASET}: no example has a response token within sft.max_length")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # safe: labels are explicit, EOS is never masked

    config = AutoConfig.from_pretrained(params.base_model, **revision_kwargs(params.base_model, params.revision))
    device = f"cuda:{state.local_process_index}" if torch.cuda.is_available() else "cpu"
    attention = pick_attention(params, config, device, dtype) if params.packing else None
    padding_free = attention is not None
    if params.packing and not padding_free:
        log.info("no attention implementation keeps packed examples apart here: padding instead, "
                 "in micro-batches of examples of similar length")
    model = load_for_training(params.base_model, params.revision, attention or params.attn_implementation or None,
                              params.quantization)
    if params.lora_r > 0:
        from peft import get_peft_model

        model = get_peft_model(model, lora_config(params.lora_r, params.lora_alpha, params.lora_dropout,
                                                  params.lora_target_modules))
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    shards = devices if params.deepspeed else 1
    memory = plan_memory(config, total, trainable, params.max_length, params.micro_batch_tokens,
                         params.gradient_checkpointing, bool(half), shards)
    log.info("gradient checkpointing %s (%s)", "on" if memory.checkpointing else "off", memory.why)
    budget = memory.micro_batch_tokens
    log.info("%s micro-batches of up to %d tokens, attention %s; %d examples per optimizer step over %d device(s)",
             "padding-free" if padding_free else "padded", budget, attention or params.attn_implementation or "default",
             params.global_batch_size, devices)

    resolved = {**params.model_dump(), "world_size": devices, "train_data_sha256": data_hash,
                "train_examples": len(dataset), "base_model_commit": base_commit(model)}
    # How steps are split (budget, attention, padding) does not change what a step computes, and the
    # automatic budget follows free memory: a resumed run must find its checkpoints regardless.
    run_id = hashlib.sha256(json.dumps(resolved, sort_keys=True).encode()).hexdigest()[:12]
    resolved.update({"attention": attention, "padding_free": padding_free, "micro_batch_tokens": budget,
                     "gradient_checkpointing_on": memory.checkpointing})
    checkpoints = paths.STATE / "sft-checkpoints" / run_id
    fused = not params.deepspeed and params.quantization == "none"
    config_args = TrainingArguments(
        output_dir=str(checkpoints),
        per_device_train_batch_size=1,  # one item = one optimizer step of token-budget micro-batches
        gradient_accumulation_steps=1,
        learning_rate=params.learning_rate,
        num_train_epochs=params.epochs,
        max_steps=params.max_steps,
        warmup_steps=params.warmup_steps,
        lr_scheduler_type=params.lr_scheduler,
        weight_decay=params.weight_decay,
        adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8,
        optim="adamw_torch_fused" if fused else "adamw_torch",
        **checkpointing_flag(TrainingArguments, memory.checkpointing),
        logging_steps=params.logging_steps,
        logging_nan_inf_filter=False,  # it syncs with the device every step
        save_steps=params.save_steps,
        save_total_limit=2,
        seed=params.seed,
        report_to=[],
        deepspeed=params.deepspeed or None,
        disable_tqdm=True,
        use_liger_kernel=params.liger_kernels,
        torch_compile=params.torch_compile,
        **precision,
    )
    collate = padding_free_collator(bool(attention and attention.startswith("flash"))) if padding_free \
        else padded_collator(tokenizer.pad_token_id)
    steps = StepData(dataset, params.global_batch_size, devices, state.process_index, budget, padding_free,
                     params.seed, collate, filler={"input_ids": [tokenizer.pad_token_id], "labels": [-100]})
    trainer = BudgetTrainer(model=model, args=config_args, train_dataset=steps, processing_class=tokenizer,
                            step_data=steps, dataloader_workers=2 if torch.cuda.is_available() else 0)
    last = last_complete_checkpoint(checkpoints)
    if last:
        log.info("resuming from %s", last)
    result = trainer.train(resume_from_checkpoint=last)
    tally = trainer.tally
    wall = time.monotonic() - (tally.started or time.monotonic())
    cpu = time.process_time() - tally.cpu_started

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

    losses = [{"step": e["step"], "loss": e["loss"]} for e in trainer.state.log_history if "loss" in e]
    write_json(paths.PLOTS / "sft_loss.json", losses)
    line_plot(paths.PLOTS / "sft_loss.png", {"loss": ([e["step"] for e in losses], [e["loss"] for e in losses])},
              title="SFT training loss", xlabel="optimizer step", ylabel="loss")
    tokens_per_s = round(tally.real_tokens / wall, 1) if wall > 0 else 0.0
    padding = 1 - tally.real_tokens / tally.computed_tokens if tally.computed_tokens else 0.0
    write_json(paths.METRICS / "sft.json", {
        "final_loss": round(losses[-1]["loss"], 6) if losses else None,
        "tokens_per_s": tokens_per_s,
        "examples_trained": len(dataset),
        "examples_dropped_for_length": lengths.dropped_for_length,
        "padding_share": round(padding, 4),
        "steps": trainer.state.global_step,
    })
    write_json(paths.REPORTS / "sft.json", {
        "train_loss_mean": round(result.training_loss, 6),
        "steps_this_run": tally.steps,
        "tokens_trained": tally.real_tokens,
        "tokens_computed": tally.computed_tokens,
        "example_passes": tally.examples,
        "wall_time_s": round(wall, 2),
        "cpu_time_s": round(cpu, 2),  # this process, all threads: steadier than wall time on a busy machine
        "tokens_per_s": tokens_per_s,
        "examples_in": lengths.examples_in,
        "examples_longer_than_max_length": lengths.longer_than_max_length,
        "examples_truncated": lengths.longer_than_max_length - lengths.dropped_for_length,
        "examples_dropped_for_length": lengths.dropped_for_length,
        "tokenization_cached": cached,
        "attention": attention or params.attn_implementation or "default",
        "padding_free": padding_free,
        "micro_batch_tokens": budget,
        "gradient_checkpointing": memory.checkpointing,
        "memory_plan": memory.why,
        "global_batch_size": params.global_batch_size,
        "world_size": devices,
        "trainable_parameters": trainable,
    })
    shutil.rmtree(checkpoints, ignore_errors=True)  # the run finished: its checkpoints are spent
    log.info("saved the fine-tuned model to %s after %d steps; %d real tokens in %.1fs (%.0f tokens/s, "
             "%.1f%% padding)", paths.SFT_MODEL, trainer.state.global_step, tally.real_tokens, wall, tokens_per_s,
             100 * padding)


if __name__ == "__main__":
    run_stage("sft", main)
