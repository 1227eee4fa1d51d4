"""Generation throughput of the evaluate stage against one plain `model.generate` loop, same
prompts, same model, same run.

CPU: a random-weight Llama-architecture model of about 10M parameters built on the spot, 32
HumanEval prompts in the paper's Alpaca template, 128 new tokens, greedy. The plain loop is what a
script does: batches of 16 prompts in file order through `model.generate` (each batch runs until
its longest row ends), stop strings applied after decoding. The stage is
`evolinstruct.generation.Generator` with its defaults (length-sorted prompts, rows leaving the
batch when they end, stop strings checked per row). Each is timed as the median of three
alternating runs after one warm-up; new tokens are those generated up to each row's end (EOS, stop
string or limit). Both must give the same greedy answers, which the result records.

On a GPU the same script runs with the model named by EVOL_BENCH_MODEL (a 1B-class model) and
batch sizes from free memory.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path

PROMPTS, NEW_TOKENS, PLAIN_BATCH = 32, 128, 16
STOP = ("\n### Instruction:",)


def build_model(folder: Path) -> str:
    from evolinstruct.plugins.benchmarks import HumanEval

    from evolinstruct.tiny import build_tiny_model

    corpus = [p.prompt + p.reference for p in HumanEval().load({})]
    return str(build_tiny_model(folder / "model", corpus, seed=0, vocab_size=4096, hidden_size=384, layers=6))


def plain_loop(model, tokenizer, prompts: list[str]) -> tuple[float, list[str], int]:
    import torch

    from evolinstruct.generation import cut_at_stops

    tokenizer.padding_side = "left"
    started, texts, tokens = time.monotonic(), [], 0
    for start in range(0, len(prompts), PLAIN_BATCH):
        batch = tokenizer(prompts[start : start + PLAIN_BATCH], return_tensors="pt", padding=True).to(model.device)
        with torch.inference_mode():
            out = model.generate(**batch, max_new_tokens=NEW_TOKENS, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        for row in out[:, batch["input_ids"].shape[1]:].tolist():
            if tokenizer.eos_token_id in row:
                row = row[: row.index(tokenizer.eos_token_id)]
            tokens += len(row)
            texts.append(cut_at_stops(tokenizer.decode(row, skip_special_tokens=True), STOP))
    return time.monotonic() - started, texts, tokens


def stage(model, tokenizer, prompts: list[str]) -> tuple[float, list[str], int]:
    from evolinstruct.generation import GenerationSettings, cut_at_stops, fast_generate

    stats: dict[str, int] = {}
    started = time.monotonic()
    texts = fast_generate(model, tokenizer, prompts, GenerationSettings(max_new_tokens=NEW_TOKENS, stop=STOP),
                          stats=stats)
    return time.monotonic() - started, [cut_at_stops(t, STOP) for t in texts], stats["new_tokens"]


def main() -> None:
    import torch
    from evolinstruct.plugins.benchmarks import HumanEval

    from evolinstruct import hf
    from evolinstruct.prompting import alpaca_prompt

    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.environ.get("EVOL_BENCH_MODEL") or build_model(Path(tmp))
        model, tokenizer = hf.load_model(path), hf.load_tokenizer(path)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        prompts = [alpaca_prompt(HumanEval().instruction(p)) for p in HumanEval().load({})[:PROMPTS]]
        stage(model, tokenizer, prompts[:4])  # warm-up
        plain_loop(model, tokenizer, prompts[:4])
        runs: dict[str, list[float]] = {"stage": [], "plain": []}
        outputs = {}
        for _ in range(3):
            for name, run in (("stage", stage), ("plain", plain_loop)):
                seconds, texts, tokens = run(model, tokenizer, prompts)
                runs[name].append(seconds)
                outputs[name] = (texts, tokens)
        stage_s, plain_s = statistics.median(runs["stage"]), statistics.median(runs["plain"])
        parameters = sum(p.numel() for p in model.parameters())
    result = {
        "device": str(model.device), "model_parameters": parameters, "prompts": PROMPTS,
        "max_new_tokens": NEW_TOKENS, "plain_batch_size": PLAIN_BATCH,
        "stage_new_tokens": outputs["stage"][1], "plain_new_tokens": outputs["plain"][1],
        "stage_seconds": round(stage_s, 3), "plain_seconds": round(plain_s, 3),
        "stage_tokens_per_s": round(outputs["stage"][1] / stage_s, 1),
        "plain_tokens_per_s": round(outputs["plain"][1] / plain_s, 1),
        "speedup": round(plain_s / stage_s, 2),
        "same_answers": outputs["stage"][0] == outputs["plain"][0],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
