"""Tokenize (instruction, response) pairs for SFT with the loss on the response and EOS only.

The prompt and the response are tokenized *separately* and their ids concatenated, so no token can
merge across the prompt/response boundary and shift the mask (the pitfall TRL warns about when
prompt and prompt+completion are tokenized apart). Labels are built here, explicitly: -100 over the
prompt, the response ids, then EOS. Padding (when there is any) is added later by the collator to
`input_ids` only, with labels padded by -100, so EOS stays a learned target even when the pad token
equals EOS.

Examples longer than `max_length` are truncated (as the paper's trainer does); those with no
response token left are dropped. Both are counted, never silent. The tokenized set is cached under
.evolinstruct/ keyed by the training data's hash, the tokenizer and `max_length`, so a rerun or an
`-S sft.learning_rate=...` experiment does not tokenize again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from evolinstruct.core.prompting import ALPACA_PROMPT, alpaca_prompt

IGNORE = -100
#: Bump when the tokenized format changes, so stale caches are not reused.
FORMAT_VERSION = 2
log = logging.getLogger(__name__)


@dataclass
class LengthReport:
    """What `max_length` did to the data."""

    examples_in: int
    longer_than_max_length: int  # truncated to max_length (kept when a response token survives)
    dropped_for_length: int  # no response token left after truncation: nothing to learn, dropped

    @property
    def trained(self) -> int:
        return self.examples_in - self.dropped_for_length

    def line(self, max_length: int) -> str:
        return (f"{self.longer_than_max_length} of {self.examples_in} examples are longer than sft.max_length="
                f"{max_length}: {self.longer_than_max_length - self.dropped_for_length} truncated to it, "
                f"{self.dropped_for_length} dropped (no response token left); {self.trained} examples to train on")


def join_pair(prompt_ids: list[int], response_ids: list[int], eos: int, max_length: int) -> dict[str, Any]:
    """input_ids/labels of one example, plus its untruncated length and its loss token count."""
    response_ids = response_ids + [eos]
    input_ids = (prompt_ids + response_ids)[:max_length]
    labels = ([IGNORE] * len(prompt_ids) + response_ids)[:max_length]
    return {"input_ids": input_ids, "labels": labels, "full_length": len(prompt_ids) + len(response_ids),
            "length": len(input_ids), "response_tokens": sum(label != IGNORE for label in labels)}


def _eos(tokenizer: Any) -> int:
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no EOS token, so the model could never learn to stop")
    return tokenizer.eos_token_id


def tokenize_pair(tokenizer: Any, instruction: str, response: str, max_length: int) -> dict[str, list[int]]:
    prompt_ids = tokenizer(alpaca_prompt(instruction), add_special_tokens=True)["input_ids"]
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    row = join_pair(prompt_ids, response_ids, _eos(tokenizer), max_length)
    return {"input_ids": row["input_ids"], "labels": row["labels"]}


def tokenize_dataset(dataset: Any, tokenizer: Any, max_length: int) -> tuple[Any, LengthReport]:
    """Map a datasets.Dataset with `instruction`/`output` columns to `input_ids`/`labels` (plus
    `length` and `response_tokens`, which the batch planner reads), dropping examples whose response
    was truncated away entirely (they would teach nothing), and say what the length limit did.

    Everything stays in memory: `datasets` would otherwise write cache files into the dataset's
    folder, which is another stage's DVC output."""
    eos = _eos(tokenizer)

    def batch(rows: dict[str, list]) -> dict[str, list]:
        prompts = tokenizer([alpaca_prompt(i) for i in rows["instruction"]], add_special_tokens=True)["input_ids"]
        responses = tokenizer(list(rows["output"]), add_special_tokens=False)["input_ids"]
        joined = [join_pair(p, r, eos, max_length) for p, r in zip(prompts, responses, strict=True)]
        return {key: [row[key] for row in joined] for key in joined[0]} if joined else {}

    mapped = dataset.map(batch, batched=True, remove_columns=dataset.column_names, desc="tokenizing",
                         keep_in_memory=True)
    longer = sum(1 for n in mapped["full_length"] if n > max_length)
    kept = mapped.filter(lambda n: n > 0, input_columns="response_tokens", keep_in_memory=True)
    report = LengthReport(len(mapped), longer, len(mapped) - len(kept))
    return kept.remove_columns("full_length"), report


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A hash of what the tokenizer does (its full serialisation when it is a fast tokenizer)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    body = backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab(), sort_keys=True)
    extra = json.dumps([type(tokenizer).__name__, tokenizer.eos_token_id, tokenizer.bos_token_id,
                        getattr(tokenizer, "add_bos_token", None)])
    return hashlib.sha256((body + extra).encode()).hexdigest()


def cached_tokenized(dataset_path: Path, data_hash: str, tokenizer: Any, max_length: int,
                     cache_root: Path) -> tuple[Any, LengthReport, bool]:
    """The tokenized training set, from `cache_root` when this data, tokenizer and max_length were
    tokenized before. Returns (dataset, length report, whether it came from the cache)."""
    import datasets

    from evolinstruct.core.atomic import atomic_dir, write_json

    key = hashlib.sha256(json.dumps({"data": data_hash, "tokenizer": tokenizer_fingerprint(tokenizer),
                                     "max_length": max_length, "format": FORMAT_VERSION,
                                     "prompt": ALPACA_PROMPT}, sort_keys=True).encode()).hexdigest()[:16]
    folder = cache_root / key
    if (folder / "report.json").exists():
        report = LengthReport(**json.loads((folder / "report.json").read_text(encoding="utf-8")))
        return datasets.load_from_disk(str(folder / "dataset"), keep_in_memory=True), report, True
    raw = datasets.load_from_disk(str(dataset_path), keep_in_memory=True)
    tokenized, report = tokenize_dataset(raw, tokenizer, max_length)
    with atomic_dir(folder) as tmp:
        tokenized.save_to_disk(str(tmp / "dataset"))
        write_json(tmp / "report.json", asdict(report))
    return tokenized, report, False
