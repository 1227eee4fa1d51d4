"""The `sft` params group as TRL's `SFTConfig`, plus `sft.extra_args` checked against it.

Users who know TRL find the run's full configuration where they expect it: `SFTConfig`, saved
with the model as `models/sft/sft_config.json`. The `sft` group sets the fields it owns (the
paper's hyper-parameters, precision, DeepSpeed); `sft.extra_args` passes any other SFTConfig
field through, after checking its name against SFTConfig itself (so a TRL upgrade that adds a
field needs no change here). The fields that carry the stage's step plan (one dataloader item is
a whole optimizer step of token-budget micro-batches, evolinstruct.train.trainer) are refused.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any

from evolinstruct.core.errors import EvolError
from evolinstruct.core.params import SFTParams

#: SFTConfig fields set from the `sft` group: where to set them instead.
FROM_GROUP = {
    "learning_rate": "learning_rate", "num_train_epochs": "epochs", "max_steps": "max_steps",
    "warmup_steps": "warmup_steps", "lr_scheduler_type": "lr_scheduler", "weight_decay": "weight_decay",
    "logging_steps": "logging_steps", "save_steps": "save_steps", "seed": "seed", "deepspeed": "deepspeed",
    "use_liger_kernel": "liger_kernels", "torch_compile": "torch_compile", "bf16": "precision",
    "fp16": "precision", "use_cpu": "precision", "gradient_checkpointing": "gradient_checkpointing",
    "activation_checkpointing": "gradient_checkpointing", "max_length": "max_length",
    "packing": "packing", "padding_free": "packing",
}
#: SFTConfig fields that carry the stage's step plan or its outputs: not settable.
STAGE_OWNED = ("output_dir", "per_device_train_batch_size", "gradient_accumulation_steps", "dataset_kwargs",
               "report_to", "remove_unused_columns", "packing_strategy", "average_tokens_across_devices",
               "logging_nan_inf_filter", "disable_tqdm", "gradient_checkpointing_kwargs",
               "activation_checkpointing_kwargs", "dataset_text_field", "completion_only_loss",
               "assistant_only_loss", "loss_type", "max_seq_length")


def sft_fields() -> list[str]:
    from trl import SFTConfig

    return [f.name for f in dataclasses.fields(SFTConfig) if f.init]


def check_extra_args(extra: dict[str, Any]) -> None:
    """Every key of `sft.extra_args` must be an SFTConfig field that the group does not already set;
    one line per problem, with a did-you-mean."""
    known = sft_fields()
    for key in extra:
        where = f"params.yaml: sft.extra_args.{key}"
        if key in FROM_GROUP:
            raise EvolError(f"{where}: the sft group sets SFTConfig.{key}; set sft.{FROM_GROUP[key]} instead")
        if key in STAGE_OWNED:
            raise EvolError(f"{where}: SFTConfig.{key} is set by the stage (its step plan and outputs depend on it)")
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise EvolError(f"{where}: not a field of TRL's SFTConfig{hint}")


def precision_flags(precision: str, cuda: bool, bf16_supported: bool) -> dict[str, bool]:
    """SFTConfig's precision fields: fp32 on a CPU whatever is asked; `auto` = bf16 where supported."""
    if not cuda:
        return {"use_cpu": True, "bf16": False, "fp16": False}
    if precision == "auto":
        precision = "bf16" if bf16_supported else "fp16"
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


def checkpointing_flag(enabled: bool) -> dict[str, Any]:
    """transformers 5 renamed gradient_checkpointing to activation_checkpointing; use what exists.
    Non-reentrant checkpointing also works with LoRA's frozen inputs."""
    name = "activation_checkpointing" if "activation_checkpointing" in sft_fields() else "gradient_checkpointing"
    return {name: enabled, f"{name}_kwargs": {"use_reentrant": False} if enabled else None}


def sft_config(params: SFTParams, output_dir: str, checkpointing: bool, cuda: bool, bf16_supported: bool) -> Any:
    """The run's SFTConfig: the group's fields, the stage's step plan, then `extra_args`."""
    from trl import SFTConfig

    check_extra_args(params.extra_args)
    fused = not params.deepspeed and params.quantization == "none"
    stage = dict(
        output_dir=output_dir,
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
        logging_steps=params.logging_steps,
        logging_nan_inf_filter=False,  # it syncs with the device every step
        save_steps=params.save_steps,
        save_total_limit=2,
        seed=params.seed,
        report_to=[],  # DVCLive is added as a callback, with its folder and options (evolinstruct.train.live)
        deepspeed=params.deepspeed or None,
        disable_tqdm=True,
        use_liger_kernel=params.liger_kernels,
        torch_compile=params.torch_compile,
        # The stage tokenizes (Alpaca prompt, response-only labels, truncation to max_length) and packs itself
        max_length=params.max_length,
        packing=False,
        padding_free=False,
        dataset_kwargs={"skip_prepare_dataset": True},
        **checkpointing_flag(checkpointing),
        **precision_flags(params.precision, cuda, bf16_supported),
    )
    try:
        return SFTConfig(**{**stage, **params.extra_args})
    except (TypeError, ValueError) as exc:
        raise EvolError(f"params.yaml: sft.extra_args: SFTConfig refused them: {str(exc).splitlines()[0]}") from exc
