"""The model side of SFT: loading the base model for training (full, LoRA or QLoRA), choosing an
attention path that keeps padding-free packed examples apart, and turning what was trained into a
plain model folder that evaluate can load.

Padding-free micro-batches concatenate their examples into one row, with position ids restarting
at 0 per example. Flash-attention's variable-length kernels read the boundaries from them (or from
the cumulative lengths the collator adds); for `flex_attention`, `sdpa` and `eager`, transformers
builds a block-diagonal causal mask from the position ids, but only when no `attention_mask` is
passed: a 2D all-ones mask silently lets the packed examples attend to each other. The candidate
kernels are therefore *probed* before one is chosen: a small copy of the model (same architecture
and attention shapes, one layer) runs three examples alone and packed; a path is chosen only if the
packed logits equal the lone ones, measured against how far they move when the examples are let to
attend to each other. If no path passes, the stage falls back to length-bucketed padding.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from evolinstruct.core.errors import EvolError

QUANTIZATIONS = ("none", "4bit", "8bit")
#: Passed to every training forward. transformers (5.x) builds the per-example mask from the position
#: ids only when there is no cache, and the default `use_cache=True` creates one even in training:
#: packed examples then attend to each other. The probe below runs with the same arguments.
TRAIN_FORWARD_KWARGS = {"use_cache": False}
log = logging.getLogger(__name__)


def attention_candidates(requested: str, cuda: bool) -> list[str]:
    """Attention implementations to try for padding-free batches, fastest first (or the one the
    user asked for)."""
    if requested:
        return [requested]
    found = []
    if cuda and importlib.util.find_spec("flash_attn") is not None:
        found.append("flash_attention_2")
    if cuda:
        found.append("flex_attention")  # block-sparse: skips the masked-out blocks; compiled, CUDA only here
    return found + ["sdpa", "eager"]


def probe_model(config: Any, attn_implementation: str, device: str, dtype: Any) -> Any:
    """A one-layer random copy of the architecture with a small vocabulary and MLP: it exercises the
    same attention and mask code as the real model at a fraction of the cost."""
    import torch
    from transformers import AutoModelForCausalLM

    small = copy.deepcopy(config)
    small.num_hidden_layers = 1
    for name, value in (("vocab_size", 512), ("intermediate_size", 64), ("pad_token_id", None)):
        if hasattr(small, name):
            setattr(small, name, value)
    if isinstance(getattr(small, "layer_types", None), list):
        small.layer_types = small.layer_types[:1]
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(small, attn_implementation=attn_implementation, dtype=dtype)
    return model.to(device).eval()


def packed_logit_gaps(model: Any, examples: Sequence[Sequence[int]], collate: Callable[[list], dict],
                      device: str) -> tuple[float, float]:
    """(gap, leak): the largest difference between an example's logits packed with the others and
    alone, and the same when the packed row is given an all-ones attention mask (the examples then
    attend to each other, which shows how large a real leak would be)."""
    import torch

    with torch.no_grad():
        alone = [model(input_ids=torch.tensor([ids], device=device)).logits[0].float() for ids in examples]
        batch = {k: v.to(device) if hasattr(v, "to") else v
                 for k, v in collate([{"input_ids": list(ids), "labels": list(ids)} for ids in examples]).items()}
        batch.pop("labels", None)
        packed = model(**batch, **TRAIN_FORWARD_KWARGS).logits[0].float()
        ids = batch["input_ids"]
        leaky = model(input_ids=ids, attention_mask=torch.ones_like(ids), **TRAIN_FORWARD_KWARGS).logits[0].float()
    cuts = [0]
    for ids in examples:
        cuts.append(cuts[-1] + len(ids))

    def gap(logits: Any) -> float:
        return max((logits[a:b] - one).abs().max().item() for a, b, one in zip(cuts[:-1], cuts[1:], alone, strict=True))

    return gap(packed), gap(leaky)


def keeps_examples_apart(gap: float, leak: float) -> bool:
    """Packed logits match the lone ones when their difference is noise next to a real leak."""
    return leak > 0 and gap <= 0.05 * leak


def choose_attention(candidates: Sequence[str], probe: Callable[[str], tuple[float, float]]) -> str | None:
    """The first candidate whose probe shows packed examples kept apart; None when none does. A
    candidate that cannot even run (kernel missing, unsupported dtype) is passed over."""
    for name in candidates:
        try:
            gap, leak = probe(name)
        except Exception as exc:  # noqa: BLE001 - any failure to run disqualifies the path
            log.info("attention %s unavailable for padding-free batches: %s", name, str(exc).splitlines()[0][:200])
            continue
        if keeps_examples_apart(gap, leak):
            log.info("attention %s keeps packed examples apart (probe: logits differ by %.2g packed vs alone, "
                     "%.2g if they attended to each other)", name, gap, leak)
            return name
        log.info("attention %s does not keep packed examples apart (probe: %.2g vs %.2g if leaking); not used",
                 name, gap, leak)
    return None


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


def load_for_training(name_or_path: str, revision: str, attn_implementation: str | None, quantization: str) -> Any:
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
