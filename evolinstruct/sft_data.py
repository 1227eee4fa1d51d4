"""Tokenize (instruction, response) pairs for SFT with the loss on the response and EOS only.

The prompt and the response are tokenized *separately* and their ids concatenated, so no token can
merge across the prompt/response boundary and shift the mask (the pitfall TRL warns about when
prompt and prompt+completion are tokenized apart). Labels are built here, explicitly: -100 over the
prompt, the response ids, then EOS. Padding is added later by the collator to `input_ids` only, with
labels padded by -100, so EOS stays a learned target even when the pad token equals EOS.
"""

from __future__ import annotations

from typing import Any

from evolinstruct.core.prompting import alpaca_prompt

IGNORE = -100


def tokenize_pair(tokenizer: Any, instruction: str, response: str, max_length: int) -> dict[str, list[int]]:
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no EOS token, so the model could never learn to stop")
    prompt_ids = tokenizer(alpaca_prompt(instruction), add_special_tokens=True)["input_ids"]
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    input_ids = (prompt_ids + response_ids)[:max_length]
    labels = ([IGNORE] * len(prompt_ids) + response_ids)[:max_length]
    return {"input_ids": input_ids, "labels": labels}


def tokenize_dataset(dataset: Any, tokenizer: Any, max_length: int) -> Any:
    """Map a datasets.Dataset with `instruction`/`output` columns to `input_ids`/`labels`, dropping
    examples whose response was truncated away entirely (they would teach nothing).

    Everything stays in memory: `datasets` would otherwise write cache files into the dataset's
    folder, which is another stage's DVC output."""
    mapped = dataset.map(
        lambda row: tokenize_pair(tokenizer, row["instruction"], row["output"], max_length),
        remove_columns=dataset.column_names,
        desc="tokenizing",
        keep_in_memory=True,
    )
    return mapped.filter(lambda row: any(label != IGNORE for label in row["labels"]), keep_in_memory=True)
