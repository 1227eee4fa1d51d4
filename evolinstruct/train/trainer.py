"""The SFT training loop: TRL's SFTTrainer, fed one optimizer step at a time.

SFTTrainer (configured by an SFTConfig, evolinstruct.train.config) keeps what it does well (optimizer, schedule, mixed precision, DeepSpeed/DDP through
accelerate, checkpoints and resume, logging without per-step host syncs). What changes is the
unit it iterates over: each item of the dataloader is a whole optimizer step, i.e. this rank's
token-budget micro-batches of one global batch (evolinstruct.train.batching), so the number of
micro-batches can vary from step to step while a step always sees `global_batch_size` examples.
`training_step` runs them one by one, each loss being its sum over response tokens divided by the
response tokens of the whole global batch on every rank, so the gradient equals the one of the
global batch in a single pass, however it is split.

Imported only by the stage, after its cheap checks (it imports torch and transformers).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import TrainerCallback
from trl import SFTTrainer

from evolinstruct.train.batching import Step, plan_epoch
from evolinstruct.train.data import IGNORE
from evolinstruct.train.model import TRAIN_FORWARD_KWARGS

log = logging.getLogger(__name__)


def padding_free_collator(flash_kwargs: bool) -> Callable[[list[dict]], dict]:
    """transformers' flattening collator: one row, position ids restarting per example, the first
    label of each example masked, and no attention mask (which would let examples see each other).
    Flash-attention also gets the cumulative lengths, so it needs no host sync to find them."""
    from transformers import DataCollatorWithFlattening

    return DataCollatorWithFlattening(return_flash_attn_kwargs=flash_kwargs, separator_id=IGNORE)


def padded_collator(pad_token_id: int) -> Callable[[list[dict]], dict]:
    """TRL's collator: right padding of input_ids with the pad token, labels with -100, and the
    attention mask; used when no attention path keeps packed examples apart."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    return DataCollatorForLanguageModeling(pad_token_id=pad_token_id)


def micro_batch_loss(model: Any, batch: dict, denominator: int) -> torch.Tensor:
    """Sum of the cross-entropy over the micro-batch's response tokens / `denominator` (the global
    batch's response tokens): the model's own loss function, told the global count."""
    return model(**batch, **TRAIN_FORWARD_KWARGS, num_items_in_batch=denominator).loss


def accumulate_gradients(model: Any, micro_batches: Sequence[dict], denominator: int,
                         backward: Callable[[torch.Tensor, bool], None], scale: float = 1.0) -> torch.Tensor:
    """Forward and backward every micro-batch of one step; returns the step's loss (detached).
    `backward(loss, last)` lets the caller defer gradient sync to the last micro-batch; `scale`
    undoes the averaging over ranks of DDP/DeepSpeed (the loss is already a share of the global sum)."""
    total = torch.zeros((), device=next(model.parameters()).device)
    for k, batch in enumerate(micro_batches):
        loss = micro_batch_loss(model, batch, denominator) * scale
        backward(loss, k == len(micro_batches) - 1)
        total += loss.detach()
    return total


@dataclass
class Tally:
    """Host-side counts of what was trained in this process (from the plan: no device sync)."""

    real_tokens: int = 0
    computed_tokens: int = 0
    examples: int = 0
    steps: int = 0
    started: float | None = None  # wall clock at the first step
    cpu_started: float = 0.0  # this process's CPU time at the first step (all threads)


class StepData(torch.utils.data.Dataset):
    """One item per optimizer step of the current epoch: this rank's collated micro-batches."""

    def __init__(self, examples: Any, global_batch_size: int, world: int, rank: int, budget: int,
                 padding_free: bool, seed: int, collate: Callable[[list[dict]], dict], filler: dict) -> None:
        """`examples`: the tokenized datasets.Dataset (input_ids, labels, length, response_tokens),
        read per step from its Arrow table rather than held as Python lists (80k examples of 2k
        tokens would be gigabytes of Python ints, copied into every dataloader worker)."""
        self.examples = examples.select_columns(["input_ids", "labels"])
        self.lengths = list(examples["length"])
        self.response = list(examples["response_tokens"])
        self.args = dict(global_batch_size=global_batch_size, world=world, rank=rank, budget=budget,
                         padding_free=padding_free, seed=seed)
        self.collate, self.filler = collate, filler
        self.steps: list[Step] = []
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.steps = plan_epoch(self.lengths, self.response, epoch=epoch, **self.args)

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, i: int) -> dict:
        step = self.steps[i]
        # An empty micro-batch (more micro-batches than examples on this rank) runs one masked token,
        # so that every rank still takes part in every forward (ZeRO-3 gathers weights there).
        micro = []
        for mb in step.micro_batches:
            rows = self.examples[list(mb)] if mb else {"input_ids": [], "labels": []}
            features = [{"input_ids": i, "labels": lab} for i, lab in zip(rows["input_ids"], rows["labels"], strict=True)]
            micro.append(self.collate(features or [self.filler]))
        return {"micro_batches": micro, "response_tokens": step.response_tokens, "real_tokens": step.real_tokens,
                "computed_tokens": step.computed_tokens, "examples": step.examples}


class EpochPlan(TrainerCallback):
    """Re-plans the global batches at each epoch start, from the step count (so a resumed run
    plans the epoch it resumes in)."""

    def __init__(self, data: StepData) -> None:
        self.data = data

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.data.set_epoch(state.global_step // max(1, len(self.data)))


class BudgetTrainer(SFTTrainer):
    """An SFTTrainer whose dataloader yields whole steps (see the module docstring).

    It gets the tokenized `datasets.Dataset` as its train dataset (`skip_prepare_dataset`: the stage
    tokenized it already, in the paper's format) and `step_data`, the step plan over it, which its
    dataloader serves."""

    def __init__(self, *args: Any, step_data: StepData, dataloader_workers: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.step_data, self.workers = step_data, dataloader_workers
        self.tally = Tally()
        self._flops_per_token = 6 * self.model.num_parameters(exclude_embeddings=True)
        self._last_log = (0, 0.0)  # (real tokens, wall clock) at the previous log
        self.add_callback(EpochPlan(step_data))
        self.add_callback(LogLastStep())

    def get_train_dataloader(self) -> torch.utils.data.DataLoader:
        # batch_size=1 and an unwrapping collate keep a batch sampler, which resume's skip needs.
        return torch.utils.data.DataLoader(
            self.step_data, batch_size=1, shuffle=False, collate_fn=_only, num_workers=self.workers,
            pin_memory=torch.cuda.is_available(), persistent_workers=False,
            prefetch_factor=2 if self.workers else None)

    def floating_point_ops(self, inputs: dict) -> int:
        return self._flops_per_token * inputs["real_tokens"] // self.accelerator.num_processes

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Adds the real (non-padding) tokens per second since the previous log, from the plan's
        counts: no device sync."""
        if "loss" in logs and self.tally.started is not None:
            now = time.monotonic()
            tokens, since = self._last_log
            since = since or self.tally.started
            if now > since:
                logs["tokens_per_s"] = round((self.tally.real_tokens - tokens) / (now - since), 1)
            self._last_log = (self.tally.real_tokens, now)
        super().log(logs, start_time)

    def training_step(self, model: Any, inputs: dict, num_items_in_batch: Any = None) -> torch.Tensor:
        if self.tally.started is None:
            self.tally.started, self.tally.cpu_started = time.monotonic(), time.process_time()
        model.train()
        if callable(getattr(self.optimizer, "train", None)):
            self.optimizer.train()
        from accelerate.utils import DistributedType

        deepspeed = self.accelerator.distributed_type == DistributedType.DEEPSPEED

        def backward(loss: torch.Tensor, last: bool) -> None:
            # DeepSpeed reads the accumulation boundary from here; DDP needs no_sync until the last.
            self.accelerator.gradient_state._set_sync_gradients(last)
            with contextlib.nullcontext() if last or deepspeed else self.accelerator.no_sync(model):
                self.accelerator.backward(loss)

        micro = [self._prepare_inputs(batch) for batch in inputs["micro_batches"]]
        # SFTTrainer's activation offloading (SFTConfig.activation_offloading) wraps the step as in its own
        with self.maybe_activation_offload_context, self.compute_loss_context_manager():
            loss = accumulate_gradients(model, micro, inputs["response_tokens"], backward,
                                        scale=self.accelerator.num_processes)
        self.tally.real_tokens += inputs["real_tokens"]
        self.tally.computed_tokens += inputs["computed_tokens"]
        self.tally.examples += inputs["examples"]
        self.tally.steps += 1
        return loss


class LogLastStep(TrainerCallback):
    """Logs the last step whatever `logging_steps` is, so that a run shorter than it (or ending
    between two logs) still has its final loss in the curve and in `final_loss`."""

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.max_steps and state.global_step >= state.max_steps:
            control.should_log = True


def _only(items: list) -> Any:
    (item,) = items
    return item


@dataclass
class MemoryPlan:
    micro_batch_tokens: int
    checkpointing: bool
    why: str


#: Largest automatic micro-batch: beyond this a GPU is saturated; on a CPU, where the dense
#: block-diagonal mask makes attention cost grow with the square of the row, rows stay short (an
#: example longer than the budget is a micro-batch of its own).
AUTO_CAP = {"cuda": 16384, "cpu": 1024}
#: On a GPU, gradient checkpointing is turned on when micro-batches without it would hold fewer
#: tokens than this (too little work per kernel to keep the GPU busy).
GPU_MIN_TOKENS = 4096


def plan_memory(config: Any, total_params: int, trainable_params: int, max_length: int, requested_tokens: int,
                checkpointing: bool | str, half_precision: bool, shards: int) -> MemoryPlan:
    """Micro-batch token budget and gradient checkpointing from the model's size and free memory.

    Per token, without checkpointing, each layer keeps about (16 h + 3 i) activations (attention
    inputs and outputs, norms, residuals, the MLP's gate/up/product), plus fp32 logits and their
    gradient (12 bytes x vocab); with checkpointing, one hidden state per layer plus one layer's
    worth. Weights, gradients and AdamW state take 4 + 12 bytes per trainable parameter (4 per
    frozen one), divided by `shards` under DeepSpeed. Rough, on purpose conservative by 20%."""
    cuda = torch.cuda.is_available()
    if cuda:
        free = torch.cuda.mem_get_info()[1]  # the model is not on the GPU yet: its whole memory
        state = (total_params * 4 + trainable_params * 12) / shards
    else:
        import psutil

        free = psutil.virtual_memory().available  # the fp32 weights are loaded already
        state = trainable_params * 12 / shards
    free_for_activations = max(0.0, 0.8 * free - state)
    h = getattr(config, "hidden_size", 4096)
    inter = getattr(config, "intermediate_size", None) or 4 * h
    layers = getattr(config, "num_hidden_layers", 32)
    vocab = getattr(config, "vocab_size", 32000)
    act = 2 if half_precision else 4
    full = layers * act * (16 * h + 3 * inter) + 12 * vocab
    checkpointed = layers * act * h + act * (16 * h + 3 * inter) + 12 * vocab
    fits_full = int(free_for_activations // full)
    cap = AUTO_CAP["cuda" if cuda else "cpu"]
    if checkpointing == "auto":
        wanted = max(max_length, GPU_MIN_TOKENS if cuda else max_length)
        checkpointing = fits_full < wanted
        why = (f"auto: {fits_full} tokens of activations fit without it, {'below' if checkpointing else 'at least'} "
               f"the {wanted} wanted")
    else:
        why = "set by sft.gradient_checkpointing"
    per_token = checkpointed if checkpointing else full
    if requested_tokens:
        return MemoryPlan(requested_tokens, bool(checkpointing), why)
    fits = int(free_for_activations // per_token)
    budget = max(256, min(cap, fits // 64 * 64))
    why += f"; micro-batches of {budget} tokens (auto: {free_for_activations / 2**30:.1f} GiB for activations)"
    return MemoryPlan(budget, bool(checkpointing), why)
