"""Generation throughput of the evaluate stage against one plain `model.generate` loop, same
prompts, same model, same run.

CPU: a random-weight Llama-architecture model (3.1M parameters) built on the spot, 32 HumanEval prompts in the
paper's Alpaca template, up to 128 new tokens, greedy. A random-weight model never ends its
answers, and a trained one does, at lengths that differ from row to row; so the model's EOS logit
is forced (a forward hook, the same for both paths) once a row's length, prompt plus answer,
reaches a multiple of 128: answers then end after 1 to 128 tokens, depending on the prompt.

The plain loop is what a script does: batches of 32 prompts (here one call) in file order through
`model.generate` (each batch runs until its longest row ends), stop strings applied after
decoding. The stage is `evolinstruct.evaluate.generation.fast_generate` with the stage's defaults
(length-sorted prompts, batch size from the device or EVOL_BENCH_BATCH, rows leaving the batch
when they end and the next prompts joining it, stop strings checked per row). Each is timed as the median of three alternating runs after one
warm-up, in CPU seconds of the process (one torch thread: the machine is shared, and wall time
would measure the neighbours); new tokens are those generated up to each row's end. Both must give the same greedy
answers, which the result records (`same_answers`).

On a GPU: EVOL_BENCH_MODEL names the model (a 1B-class model; no EOS forcing then), and
EVOL_BENCH_TOKENS the limit (512).
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path

PROMPTS, PLAIN_BATCH = 32, 32
NEW_TOKENS = int(os.environ.get("EVOL_BENCH_TOKENS", "128"))
ANSWER_PERIOD = 128
STAGE_BATCH = int(os.environ.get("EVOL_BENCH_BATCH", "0"))  # 0 = the stage default
STOP = ("\n### Instruction:",)


def now() -> float:
    """CPU seconds of this process on CPU; wall seconds after a device sync on a GPU."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
        return time.monotonic()
    return time.process_time()


def build_model(folder: Path) -> str:
    from evolinstruct.plugins.benchmarks import HumanEval

    from evolinstruct.demo.tiny import build_tiny_model

    corpus = [p.prompt + p.reference for p in HumanEval().load({})]
    return str(build_tiny_model(folder / "model", corpus, seed=0, vocab_size=2048, hidden_size=256, layers=4))


def plain_loop(model, tokenizer, prompts: list[str]) -> tuple[float, list[str], int]:
    import torch

    from evolinstruct.evaluate.generation import cut_at_stops

    tokenizer.padding_side = "left"
    started, texts, tokens = now(), [], 0
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
    return now() - started, texts, tokens


def stage(model, tokenizer, prompts: list[str]) -> tuple[float, list[str], int]:
    from evolinstruct.evaluate.generation import GenerationSettings, cut_at_stops, fast_generate

    stats: dict[str, int] = {}
    started = now()
    texts = fast_generate(model, tokenizer, prompts, GenerationSettings(max_new_tokens=NEW_TOKENS, stop=STOP, batch_size=STAGE_BATCH),
                          stats=stats)
    return now() - started, [cut_at_stops(t, STOP) for t in texts], stats["new_tokens"]


def main() -> None:
    import torch
    from evolinstruct.plugins.benchmarks import HumanEval

    from evolinstruct.core.prompting import alpaca_prompt
    from evolinstruct.demo.tiny import end_answers_every
    from evolinstruct.llm import hf

    # One thread, timed in CPU seconds of this process: on a shared machine wall time measures the
    # neighbours; on a GPU, wall time (synchronised) is what counts.
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.environ.get("EVOL_BENCH_MODEL") or build_model(Path(tmp))
        model, tokenizer = hf.load_model(path), hf.load_tokenizer(path)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        if not os.environ.get("EVOL_BENCH_MODEL"):
            end_answers_every(model, tokenizer.eos_token_id, ANSWER_PERIOD)
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
        "device": str(model.device), "clock": "wall" if torch.cuda.is_available() else "process cpu", "model_parameters": parameters, "prompts": PROMPTS,
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
