"""Tiny causal LMs built on the spot: random weights and a byte-level BPE tokenizer trained on a
given corpus. They stand in for real models where nothing can be downloaded (the demo, the tests):
they exercise every code path of loading, generation and training, and know nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

EOS, PAD = "<|endoftext|>", "<|pad|>"


def train_tokenizer(corpus: Iterable[str], vocab_size: int = 1024):  # -> PreTrainedTokenizerFast
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(list(corpus), trainer)
    # A pad token distinct from EOS, so padding can never be confused with a learned EOS.
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=EOS, bos_token=EOS, pad_token=PAD)


def build_tiny_model(
    out_dir: str | Path,
    corpus: Iterable[str],
    seed: int = 0,
    vocab_size: int = 1024,
    hidden_size: int = 64,
    layers: int = 2,
) -> Path:
    """Save a random-weight Llama-architecture model and its freshly trained tokenizer to `out_dir`."""
    from evolinstruct.llm.hf import quiet_transformers

    quiet_transformers()  # before transformers imports DeepSpeed: no "Setting accelerator to CPU" line
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # a one-shard "Writing model shards" bar is noise
    tokenizer = train_tokenizer(corpus, vocab_size)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    out = Path(out_dir)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def end_answers_every(model: Any, eos_token_id: int, period: int) -> Any:
    """Make a random-weight model end its answers the way a trained one does, at lengths that vary
    from prompt to prompt: once a row's length (prompt plus answer, its attention mask's sum)
    reaches a multiple of `period`, its next token is EOS. A forward hook, so `model.generate` and
    our own decoding loop see the same model. Returns the hook's handle (`.remove()` undoes it)."""
    import torch

    def hook(_module, _args, kwargs, output):
        mask, ids = kwargs.get("attention_mask"), kwargs.get("input_ids")
        if mask is None or ids is None or ids.shape[1] != 1:  # prefill: the answer has not begun
            return output
        done = mask.sum(-1) % period == 0
        logits = output.logits[:, -1]
        logits[done] = torch.finfo(logits.dtype).min
        logits[done, eos_token_id] = 0.0
        return output

    return model.register_forward_hook(hook, with_kwargs=True)
