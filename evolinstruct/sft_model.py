"""The model side of SFT: loading the base model for training (full, LoRA or QLoRA), the packing
guard, and turning what was trained into a plain model folder that evaluate can load.

Packing here is TRL's padding-free mode: a batch's examples are concatenated into one row and
their position ids restart at 0 per example. Only variable-length flash-attention kernels read
those boundaries; with any other attention (sdpa, eager) the examples would attend to each other,
so packing is refused there instead of silently training on cross-example attention.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evolinstruct.core.errors import EvolError

#: Attention implementations whose kernels keep padding-free packed examples apart.
SEPARATING_KERNELS = ("flash_attention_2", "flash_attention_3")
QUANTIZATIONS = ("none", "4bit", "8bit")


def check_packing(packing: bool, attn_implementation: str) -> None:
    """Refuse packing unless the attention kernel keeps packed examples from attending to each other."""
    if packing and attn_implementation not in SEPARATING_KERNELS:
        raise EvolError(
            f"params.yaml: sft.packing: packed examples would attend to each other with attention "
            f"'{attn_implementation or 'default (sdpa)'}'; packing needs sft.attn_implementation: flash_attention_2 "
            "(or flash_attention_3), whose variable-length kernels keep examples apart",
            "set sft.packing: false, or install flash-attn on a CUDA GPU and set sft.attn_implementation: "
            "flash_attention_2",
        )


def check_quantization(quantization: str, lora_r: int) -> None:
    if quantization not in QUANTIZATIONS:
        raise EvolError(f"params.yaml: sft.quantization: expected one of {', '.join(QUANTIZATIONS)}, got {quantization!r}")
    if quantization == "none":
        return
    if lora_r <= 0:
        raise EvolError("params.yaml: sft.quantization: a quantized base model can only be trained through LoRA "
                        "adapters (QLoRA)", "set sft.lora_r, e.g. 16")
    import importlib.util

    import torch

    if not torch.cuda.is_available() or importlib.util.find_spec("bitsandbytes") is None:
        raise EvolError(f"params.yaml: sft.quantization: {quantization} needs a CUDA GPU and bitsandbytes",
                        "pip install bitsandbytes on a GPU machine, or set sft.quantization: none")


def load_for_training(name_or_path: str, revision: str, attn_implementation: str, quantization: str) -> Any:
    """The base model in fp32 on the CPU (the Trainer places it and applies mixed precision), or
    quantized on the GPU for QLoRA."""
    import torch
    from transformers import AutoModelForCausalLM

    from evolinstruct.llm.hf import revision_kwargs

    kwargs: dict[str, Any] = revision_kwargs(name_or_path, revision)
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if quantization == "none":
        return AutoModelForCausalLM.from_pretrained(name_or_path, dtype=torch.float32, **kwargs)
    from transformers import BitsAndBytesConfig

    bits = BitsAndBytesConfig(
        load_in_4bit=quantization == "4bit", load_in_8bit=quantization == "8bit",
        bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.bfloat16,
    )
    model = AutoModelForCausalLM.from_pretrained(name_or_path, quantization_config=bits, dtype=torch.bfloat16,
                                                 device_map={"": torch.cuda.current_device()}, **kwargs)
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(model)


def lora_config(r: int, alpha: int, dropout: float, target_modules: list[str]) -> Any:
    from peft import LoraConfig

    targets: Any = "all-linear" if target_modules == ["all-linear"] else target_modules
    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, task_type="CAUSAL_LM")


def base_commit(model: Any) -> str | None:
    """The hub commit the base model's files came from (None for a local folder)."""
    return getattr(getattr(model, "config", None), "_commit_hash", None)


def save_merged(trainer: Any, folder: Path, base: str, revision: str, quantized: bool) -> None:
    """Save a plain model folder. LoRA adapters are merged into the base weights (QLoRA: into a
    16-bit copy of the base, since 4-bit weights cannot absorb them); the adapter is kept too, in
    `adapter/`, for users who want it separately."""
    model = trainer.model
    if not hasattr(model, "peft_config"):
        trainer.save_model(str(folder))
        return
    model.save_pretrained(str(folder / "adapter"))
    if quantized:
        import torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM

        from evolinstruct.llm.hf import revision_kwargs

        full = AutoModelForCausalLM.from_pretrained(base, dtype=torch.bfloat16, **revision_kwargs(base, revision))
        model = PeftModel.from_pretrained(full, str(folder / "adapter"))
    model.merge_and_unload().save_pretrained(str(folder))
