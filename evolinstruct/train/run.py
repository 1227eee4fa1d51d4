"""One fine-tuning run, as the `sft` stage does it: `fine_tune(params)`.

Each optimizer step sees `global_batch_size` examples, split into micro-batches by a token budget
(evolinstruct.train.batching); the examples of a micro-batch are concatenated without padding where
the attention kernel takes variable-length rows without a dense mask, and padded in buckets of
similar length elsewhere (evolinstruct.train.model); the loss is normalised by the response tokens
of the whole global batch (evolinstruct.train.trainer). TRL's SFTTrainer runs it, configured by an
SFTConfig (evolinstruct.train.config). The run starts itself under accelerate when the params ask
for several processes or DeepSpeed (evolinstruct.train.launch), logs step-level metrics with DVCLive
(evolinstruct.train.live) and resumes from its last checkpoint when interrupted.

Writes models/sft/ (weights, tokenizer, sft_config.json, training_config.json), metrics/sft.json
(the final figures), reports/sft.json (the detail), plots/sft_loss.json (with a PNG twin) and
dvclive/sft/ (step-level metrics and curves).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evolinstruct.core import paths
from evolinstruct.core.atomic import write_json
from evolinstruct.core.errors import EvolError
from evolinstruct.core.params import SFTParams
from evolinstruct.core.plots import line_plot
from evolinstruct.train.model import (
    base_commit,
    check_quantization,
    load_for_training,
    lora_config,
    save_merged,
)

log = logging.getLogger("evolinstruct.stages.sft")
#: Attention kernels that take padding-free rows without a dense mask (variable-length kernels):
#: where `sft.packing: auto` packs. With sdpa or eager the packed row needs a dense block-diagonal
#: mask, whose cost grows with the square of the row; length-bucketed padding measured faster there.
VARLEN_KERNELS = ("flash_attention", "flex_attention")


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
    from evolinstruct.train.config import check_extra_args

    if params.liger_kernels and importlib.util.find_spec("liger_kernel") is None:
        raise EvolError("params.yaml: sft.liger_kernels: the liger-kernel package is not installed",
                        "pip install liger-kernel, or set sft.liger_kernels: false")
    check_quantization(params.quantization, params.lora_r)
    check_extra_args(params.extra_args)


def varlen(attention: str) -> bool:
    return attention.startswith(VARLEN_KERNELS)


def attention_for_packing(params: SFTParams, cuda: bool) -> list[str]:
    """The kernels to probe for padding-free rows: every candidate with `packing: true`, only the
    variable-length ones with `packing: auto`, none with `packing: false`."""
    from evolinstruct.train.model import attention_candidates

    if params.packing is False:
        return []
    candidates = attention_candidates(params.attn_implementation, cuda)
    return candidates if params.packing is True else [name for name in candidates if varlen(name)]


def pick_attention(candidates: list[str], config: Any, device: str, dtype: Any) -> str | None:
    """The first candidate that keeps packed examples apart (probed), or None for the padded path."""
    from evolinstruct.train.model import choose_attention, packed_logit_gaps, probe_model
    from evolinstruct.train.trainer import padding_free_collator

    examples = [[7, 8, 9, 10, 11], list(range(20, 33)), [40, 41, 42, 43, 44, 45, 46, 47, 48]]

    def probe(name: str) -> tuple[float, float]:
        model = probe_model(config, name, device, dtype)
        return packed_logit_gaps(model, examples, padding_free_collator(name.startswith("flash")), device)

    return choose_attention(candidates, probe) if candidates else None


def warn_long_warmup(warmup_steps: int, total_steps: int) -> None:
    if warmup_steps > total_steps:
        log.warning("sft.warmup_steps=%d is longer than the run's %d optimizer steps: the learning rate never "
                    "reaches sft.learning_rate", warmup_steps, total_steps)


@dataclass
class Trained:
    """What the outputs are written from."""

    trainer: Any
    result: Any
    lengths: Any
    cached: bool
    resolved: dict
    examples: int
    trainable: int
    wall: float  # seconds from the first step to the last
    cpu: float  # this process's CPU seconds over the same span (all threads)


def fine_tune(params: SFTParams) -> None:
    """The whole stage: checks, then training here or under a launcher, then the outputs."""
    check_params(params)  # before the heavy imports: fail fast
    from evolinstruct.llm import hf

    # A missing local path, or a hub model not cached while HF_HUB_OFFLINE=1, stops here, at once.
    params.base_model = hf.check_source("sft.base_model", params.base_model, params.revision)
    from evolinstruct.train.launch import relaunch

    hf.quiet_transformers()
    if relaunch(params):
        return  # the launched processes trained and wrote the outputs
    trained = train(params)
    if trained.trainer.is_world_process_zero():
        write_outputs(params, trained)
    end_processes(trained.trainer)


def end_processes(trainer: Any) -> None:
    """Every rank waits for the main one's outputs, then leaves the process group: a rank that
    exits while DeepSpeed's or gloo's threads still run aborts ("terminate called without an
    active exception") and fails the whole launch."""
    import torch.distributed as dist

    trainer.accelerator.wait_for_everyone()
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def train(params: SFTParams) -> Trained:
    import torch
    from accelerate import PartialState
    from transformers import AutoConfig

    from evolinstruct.llm import hf
    from evolinstruct.llm.hf import revision_kwargs
    from evolinstruct.train.config import sft_config
    from evolinstruct.train.data import cached_tokenized
    from evolinstruct.train.live import LiveMetrics
    from evolinstruct.train.trainer import (
        BudgetTrainer,
        StepData,
        padded_collator,
        padding_free_collator,
        plan_memory,
    )

    cuda = torch.cuda.is_available()
    # cpu=True on a CPU machine, or torchrun/accelerate's processes would not form one job there
    state = PartialState(cpu=not cuda)
    devices = state.num_processes
    if not state.is_main_process:  # one copy of each line, from the main process
        logging.getLogger("evolinstruct").setLevel(logging.WARNING)
    bf16_ok = cuda and torch.cuda.is_bf16_supported()
    half = cuda and params.precision != "fp32"
    dtype = (torch.bfloat16 if (params.precision == "bf16" or (params.precision == "auto" and bf16_ok))
             else torch.float16) if half else torch.float32

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
    device = f"cuda:{state.local_process_index}" if cuda else "cpu"
    attention = pick_attention(attention_for_packing(params, cuda), config, device, dtype)
    padding_free = attention is not None
    if params.packing is not False and not padding_free:
        log.info("padded micro-batches of examples of similar length: %s", "no variable-length attention kernel "
                 "(flash-attention, flex_attention) here, and a dense block-diagonal mask costs more than the "
                 "padding" if params.packing == "auto" else "no attention implementation keeps packed examples "
                 "apart here")
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

    run_params = params.model_dump(exclude={"num_processes", "accelerate_config"})
    resolved = {**run_params, "world_size": devices, "train_data_sha256": data_hash,
                "train_examples": len(dataset), "base_model_commit": base_commit(model)}
    # How steps are split (budget, attention, padding) does not change what a step computes, and the
    # automatic budget follows free memory: a resumed run must find its checkpoints regardless.
    run_id = hashlib.sha256(json.dumps(resolved, sort_keys=True, default=str).encode()).hexdigest()[:12]
    resolved.update({"attention": attention, "padding_free": padding_free, "micro_batch_tokens": budget,
                     "gradient_checkpointing_on": memory.checkpointing, "memory_plan": memory.why})
    checkpoints = paths.STATE / "sft-checkpoints" / run_id
    args = sft_config(params, str(checkpoints), memory.checkpointing, cuda, bf16_ok)
    collate = padding_free_collator(bool(attention and attention.startswith("flash"))) if padding_free \
        else padded_collator(tokenizer.pad_token_id)
    steps = StepData(dataset, params.global_batch_size, devices, state.process_index, budget, padding_free,
                     params.seed, collate, filler={"input_ids": [tokenizer.pad_token_id], "labels": [-100]})
    last = last_complete_checkpoint(checkpoints)
    total_steps = params.max_steps if params.max_steps > 0 else int(len(steps) * params.epochs + 0.999999)
    if state.is_main_process:
        warn_long_warmup(params.warmup_steps, total_steps)
    trainer = BudgetTrainer(model=model, args=args, train_dataset=dataset, data_collator=collate,
                            processing_class=tokenizer, step_data=steps, dataloader_workers=2 if cuda else 0,
                            callbacks=[LiveMetrics(resume=bool(last))])
    if last:
        log.info("resuming from %s", last)
    result = trainer.train(resume_from_checkpoint=last)
    tally = trainer.tally
    wall = time.monotonic() - (tally.started or time.monotonic())
    cpu = time.process_time() - tally.cpu_started

    staging = paths.SFT_MODEL.with_name(".sft.staging")
    # Every rank takes part: ZeRO-3 gathers the 16-bit weights here.
    save_merged(trainer, staging, params.base_model, params.revision, params.quantization != "none")
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(str(staging))
        write_json(staging / "training_config.json", resolved)
        (staging / "sft_config.json").write_text(args.to_json_string(), encoding="utf-8")  # the resolved SFTConfig
        if paths.SFT_MODEL.exists():
            shutil.rmtree(paths.SFT_MODEL)
        os.replace(staging, paths.SFT_MODEL)
    return Trained(trainer, result, lengths, cached, resolved, len(dataset), trainable, wall, cpu)


def write_outputs(params: SFTParams, trained: Trained) -> None:
    """metrics/sft.json, reports/sft.json and the loss plot, from the main process."""
    trainer, tally, lengths = trained.trainer, trained.trainer.tally, trained.lengths
    wall, cpu = trained.wall, trained.cpu
    losses = [{"step": e["step"], "loss": e["loss"]} for e in trainer.state.log_history if "loss" in e]
    write_json(paths.PLOTS / "sft_loss.json", losses)
    line_plot(paths.PLOTS / "sft_loss.png", {"loss": ([e["step"] for e in losses], [e["loss"] for e in losses])},
              title="SFT training loss", xlabel="optimizer step", ylabel="loss")
    tokens_per_s = round(tally.real_tokens / wall, 1) if wall > 0 else 0.0
    padding = 1 - tally.real_tokens / tally.computed_tokens if tally.computed_tokens else 0.0
    resolved = trained.resolved
    write_json(paths.METRICS / "sft.json", {
        "final_loss": round(losses[-1]["loss"], 6) if losses else None,
        "tokens_per_s": tokens_per_s,
        "examples_trained": trained.examples,
        "examples_dropped_for_length": lengths.dropped_for_length,
        "padding_share": round(padding, 4),
        "steps": trainer.state.global_step,
    })
    write_json(paths.REPORTS / "sft.json", {
        "train_loss_mean": round(trained.result.training_loss, 6),
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
        "tokenization_cached": trained.cached,
        "attention": resolved["attention"] or params.attn_implementation or "default",
        "padding_free": resolved["padding_free"],
        "micro_batch_tokens": resolved["micro_batch_tokens"],
        "gradient_checkpointing": resolved["gradient_checkpointing_on"],
        "memory_plan": resolved["memory_plan"],
        "global_batch_size": params.global_batch_size,
        "world_size": resolved["world_size"],
        "trainable_parameters": trained.trainable,
    })
    shutil.rmtree(Path(trainer.args.output_dir), ignore_errors=True)  # the run finished: its checkpoints are spent
    log.info("saved the fine-tuned model to %s after %d steps; %d real tokens in %.1fs (%.0f tokens/s, "
             "%.1f%% padding)", paths.SFT_MODEL, trainer.state.global_step, tally.real_tokens, wall, tokens_per_s,
             100 * padding)
