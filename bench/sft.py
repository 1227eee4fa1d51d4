"""SFT throughput against the limit of the hardware, measured in the same process run.

Four runs back to back, on the same model, data, precision and seed, alternating, REPEATS times:

default: the `sft` stage's code path with its defaults (on a CPU, where no variable-length attention
         kernel exists, `packing: auto` pads in length buckets; on a GPU it packs with
         flash-attention or flex_attention), called in-process in a scratch project.
padded:  the stage with `sft.packing: false` (length-bucketed padding).
packed:  the stage with `sft.packing: true` (padding-free rows with any kernel that passes the
         probe: sdpa's dense block-diagonal mask on a CPU).
plain:   a plain PyTorch loop, no framework: the same tokens the stage trained, packed into full rows
         of the stage's micro-batch size with plain causal attention (examples may see each other:
         the cheapest possible attention, hence the limit), the same precision, fused AdamW, gradient
         clipping, one optimizer step per global batch.

The best run of each is compared: on a shared machine the load drifts from one run to the next
(every run is reported). The targets: the default at >= 0.95x the faster of padded and packed, and
at >= 0.7x the plain loop.

tokens/s counts real (non-padding) tokens over the training wall time (first step to last); the same
ratios in tokens per CPU second of the process are reported too (less swayed by neighbours). On a
GPU it also reports model FLOPs utilisation: (6 x parameters x tokens + attention) / time / peak.
On CPU two small Llama-shaped models (2.2M and ~14M parameters), one thread for every path
(steadier on a shared machine); on a GPU a 1B-class one (TinyLlama-1.1B's shape) in bf16 (commit
that result as bench/results/sft_gpu.json; `make bench-gpu`). Data: ../shared/data/code_alpaca_2k.json,
generated when absent. EVOL_BENCH_SFT_SHAPES, _STEPS, _REPEATS, _RECORDS shrink the run (bench/gpu.py's
dry run).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
from eliminate import base_records  # noqa: E402  (the same Code Alpaca records, or generated ones)

CPU_SHAPES = {
    "2.2M": {"hidden_size": 192, "intermediate_size": 512, "num_hidden_layers": 4, "num_attention_heads": 4,
             "num_key_value_heads": 4, "vocab": 2048},
    "14M": {"hidden_size": 384, "intermediate_size": 1024, "num_hidden_layers": 8, "num_attention_heads": 6,
            "num_key_value_heads": 6, "vocab": 2048},
    "toy": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
            "num_key_value_heads": 2, "vocab": 512},
}
GPU_SHAPE = {"hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 22, "num_attention_heads": 32,
             "num_key_value_heads": 4, "vocab": 32000}  # TinyLlama-1.1B's shape
#: Peak dense bf16 FLOP/s by GPU name (no sparsity).
REPEATS = int(os.environ.get("EVOL_BENCH_SFT_REPEATS", "3"))
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12, "L4": 121e12}


def build_model(folder: Path, texts: list[str], shape: dict) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from evolinstruct.demo.tiny import train_tokenizer

    tokenizer = train_tokenizer(texts, shape["vocab"])
    dims = {k: v for k, v in shape.items() if k != "vocab"}
    config = LlamaConfig(vocab_size=len(tokenizer), max_position_embeddings=4096, tie_word_embeddings=True,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, **dims)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def scaffold(folder: Path, shape: dict) -> None:
    import datasets

    from evolinstruct.core.records import seed_record, write_records

    pairs = [(i, o) for i, o in base_records() if o.strip()]
    if os.environ.get("EVOL_BENCH_SFT_RECORDS"):
        pairs = pairs[:int(os.environ["EVOL_BENCH_SFT_RECORDS"])]
    records = [seed_record(i, o) for i, o in pairs]
    write_records(folder / "data/merged/train.jsonl", records)
    datasets.Dataset.from_list([{"id": r.id, "instruction": r.instruction, "output": r.output, "round": 0}
                                for r in records]).save_to_disk(str(folder / "data/merged/dataset"))
    build_model(folder / "model", [t for pair in pairs for t in pair], shape)


def run_stage(folder: Path, **sft: object) -> dict:
    """The stage in this process, as DVC would run it in `folder`; its metrics, report and loss curve."""
    from evolinstruct.stages import sft as stage

    (folder / "params.yaml").write_text(yaml.safe_dump({"sft": sft}))
    shutil.rmtree(folder / "models", ignore_errors=True)
    previous = os.getcwd()
    os.chdir(folder)
    try:
        stage.main()
    finally:
        os.chdir(previous)
    read = lambda p: json.loads((folder / p).read_text())  # noqa: E731
    return {"metrics": read("metrics/sft.json"), "report": read("reports/sft.json"),
            "losses": [row["loss"] for row in read("plots/sft_loss.json")]}


def trained_examples(folder: Path, sft: dict, steps: int) -> tuple[list[dict], list[list[int]]]:
    """The tokenized examples and the global batches (example indices) the stage trained."""
    from evolinstruct.llm.hf import load_tokenizer
    from evolinstruct.train.batching import global_batches
    from evolinstruct.train.data import cached_tokenized
    from evolinstruct.train.run import file_hash

    os.chdir(folder)
    try:
        data, _, cached = cached_tokenized(Path("data/merged/dataset"), file_hash(Path("data/merged/train.jsonl")),
                                           load_tokenizer("model"), sft["max_length"],
                                           Path(".evolinstruct/sft-tokenized"))
    finally:
        os.chdir(REPO)
    assert cached, "the plain loop must train on the stage's own tokenization"
    return data.to_list(), global_batches(len(data), sft["global_batch_size"], sft["seed"], 0)[:steps]


def plain_loop(model_dir: Path, examples: list[dict], batches: list[list[int]], row: int, lr: float,
               device: str, bf16: bool) -> dict:
    """The limit: the same tokens in full rows, plain causal attention, no framework."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="sdpa")
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, fused=True)
    ids = torch.tensor([t for batch in batches for i in batch for t in examples[i]["input_ids"]])
    labels = torch.tensor([t for batch in batches for i in batch for t in examples[i]["labels"]])
    rows = list(zip(ids.split(row), labels.split(row), strict=True))
    per_step = -(-len(rows) // len(batches))
    steps = [rows[k:k + per_step] for k in range(0, len(rows), per_step)]
    started, cpu_started = time.perf_counter(), time.process_time()
    for step in steps:
        denominator = sum(int((lab != -100).sum()) for _, lab in step)
        for row_ids, row_labels in step:
            row_ids, row_labels = row_ids.to(device)[None], row_labels.to(device)[None]
            with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=bf16):
                logits = model(input_ids=row_ids, use_cache=False).logits
            loss = torch.nn.functional.cross_entropy(logits[0, :-1].float(), row_labels[0, 1:], ignore_index=-100,
                                                     reduction="sum") / denominator
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return {"tokens": len(ids), "wall_s": round(wall, 2), "tokens_per_s": round(len(ids) / wall, 1),
            "cpu_s": round(cpu, 2), "tokens_per_cpu_s": round(len(ids) / cpu, 1), "rows": len(rows), "row_tokens": row}


def stage_summary(run: dict) -> dict:
    report = run["report"]
    return {**run["metrics"], "tokens_trained": report["tokens_trained"], "wall_s": report["wall_time_s"],
            "cpu_s": report["cpu_time_s"], "tokens_per_cpu_s": round(report["tokens_trained"] / report["cpu_time_s"], 1)}


def parameter_count(model_dir: Path) -> int:
    """Parameters of the saved model, from the safetensors headers (no second copy in memory)."""
    import math

    from safetensors import safe_open

    total = 0
    for path in model_dir.glob("*.safetensors"):
        with safe_open(str(path), "pt") as handle:
            total += sum(math.prod(handle.get_slice(key).get_shape()) for key in handle.keys())
    return total


def peak_memory_mib(device: str) -> float:
    import torch

    if device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated() / 2**20
        torch.cuda.reset_peak_memory_stats()
        return round(peak, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # process peak so far


def mfu(model_dir: Path, examples: list[dict], batches: list[list[int]], tokens_per_s: float) -> float | None:
    """Model FLOPs utilisation on a GPU: 6 x non-embedding parameters per token, plus attention
    (6 x layers x hidden x sum of squared example lengths over a run), over the GPU's bf16 peak."""
    import torch
    from transformers import AutoConfig

    name = torch.cuda.get_device_name()
    peak = next((v for k, v in PEAK_BF16.items() if k in name), None)
    if peak is None:
        return None
    config = AutoConfig.from_pretrained(model_dir)
    h, inter, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    kv = h * config.num_key_value_heads // config.num_attention_heads
    params = layers * (2 * h * h + 2 * h * kv + 3 * h * inter) + config.vocab_size * h  # the LM head counts
    lengths = [len(examples[i]["input_ids"]) for batch in batches for i in batch]
    tokens = sum(lengths)
    flops_per_token = 6 * params + 6 * layers * h * sum(n * n for n in lengths) / tokens
    return round(flops_per_token * tokens_per_s / peak, 4)


def bench_shape(name: str, shape: dict, gpu: bool) -> dict:
    import torch

    device = "cuda" if gpu else "cpu"
    steps = int(os.environ.get("EVOL_BENCH_SFT_STEPS", "20" if gpu else "4"))
    sft = {"base_model": "model", "learning_rate": 1e-3, "epochs": 1.0, "max_steps": steps, "max_length": 2048,
           "warmup_steps": 1, "global_batch_size": 64 if gpu else 32, "logging_steps": 1, "save_steps": 10_000,
           "seed": 42, "num_processes": 1}
    variants = {"default": {}, "padded": {"packing": False}, "packed": {"packing": True}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        scaffold(folder, shape)
        parameters = parameter_count(folder / "model")
        runs: dict[str, list[dict]] = {v: [] for v in (*variants, "plain")}
        peaks: dict[str, float] = {}
        for repeat in range(REPEATS):
            for variant, extra in variants.items():
                runs[variant].append(run_stage(folder, **sft, **extra))
                peaks.setdefault(variant, peak_memory_mib(device))
            if repeat == 0:
                examples, batches = trained_examples(folder, sft, steps)
                row = runs["default"][0]["report"]["micro_batch_tokens"]
            runs["plain"].append(plain_loop(folder / "model", examples, batches, row, sft["learning_rate"], device,
                                            bf16=gpu and torch.cuda.is_bf16_supported()))
            peaks.setdefault("plain", peak_memory_mib(device))
        best = {v: max(runs[v], key=lambda run: run["metrics"]["tokens_per_s"]) for v in variants}
        plain = max(runs["plain"], key=lambda run: run["tokens_per_s"])
        assert plain["tokens"] == best["default"]["report"]["tokens_trained"], "the plain loop must train the same tokens"
        summary = {v: {**stage_summary(best[v]), "attention": best[v]["report"]["attention"],
                       "padding_free": best[v]["report"]["padding_free"],
                       "micro_batch_tokens": best[v]["report"]["micro_batch_tokens"],
                       "gradient_checkpointing": best[v]["report"]["gradient_checkpointing"],
                       "tokens_per_s_each_run": [run["metrics"]["tokens_per_s"] for run in runs[v]],
                       "peak_memory_mib": peaks[v]} for v in variants}
        summary["plain"] = {**plain, "peak_memory_mib": peaks["plain"],
                            "tokens_per_s_each_run": [run["tokens_per_s"] for run in runs["plain"]]}
        if gpu:
            for v in summary:
                summary[v]["mfu"] = mfu(folder / "model", examples, batches, summary[v]["tokens_per_s"])
    default = summary["default"]
    faster = max(("padded", "packed"), key=lambda v: summary[v]["tokens_per_s"])
    faster_cpu = max(("padded", "packed"), key=lambda v: summary[v]["tokens_per_cpu_s"])
    gaps = [abs(a - b) for a, b in zip(best["packed"]["losses"], best["padded"]["losses"], strict=True)]
    result = {
        "shape": name, "model": shape, "parameters": parameters, "steps": steps,
        "global_batch_size": sft["global_batch_size"],
        "default_path": {"padding_free": default["padding_free"], "attention": default["attention"]},
        "runs": summary,
        "faster_of_padded_and_packed": faster,
        "ratio_default_to_faster": round(default["tokens_per_s"] / summary[faster]["tokens_per_s"], 3),
        "ratio_default_to_faster_cpu_time": round(default["tokens_per_cpu_s"] / summary[faster_cpu]["tokens_per_cpu_s"], 3),
        "ratio_default_to_plain": round(default["tokens_per_s"] / plain["tokens_per_s"], 3),
        "ratio_default_to_plain_cpu_time": round(default["tokens_per_cpu_s"] / plain["tokens_per_cpu_s"], 3),
        "ratio_padded_to_plain": round(summary["padded"]["tokens_per_s"] / plain["tokens_per_s"], 3),
        "ratio_packed_to_plain": round(summary["packed"]["tokens_per_s"] / plain["tokens_per_s"], 3),
        "padding_share_default": default["padding_share"],
        "loss_curve": {"padded": best["padded"]["losses"], "packed": best["packed"]["losses"],
                       "max_abs_difference": round(max(gaps), 6)},
    }
    # On a shared CPU the verdict reads tokens per CPU second of the process (what the neighbours cannot
    # take away; one thread, so it is the work done); on a GPU, wall time.
    clock = "" if gpu else "_cpu_time"
    result["verdict_clock"] = "wall" if gpu else "process cpu time"
    result["within_target"] = (result[f"ratio_default_to_faster{clock}"] >= 0.95
                               and result[f"ratio_default_to_plain{clock}"] >= 0.7
                               and (not gpu or (default.get("mfu") or 0) >= 0.25))
    return result


def bench_sft() -> dict:
    import torch

    gpu = torch.cuda.is_available()
    if not gpu:
        # One thread for every path: on a shared machine, a second thread that keeps being descheduled
        # makes the other spin at every barrier, which swings timings by 2-4x from run to run.
        torch.set_num_threads(1)
    names = os.environ.get("EVOL_BENCH_SFT_SHAPES", "TinyLlama-1.1B" if gpu else "2.2M,14M").split(",")
    shapes = {"TinyLlama-1.1B": GPU_SHAPE, **CPU_SHAPES}
    results = [bench_shape(name, shapes[name], gpu) for name in names]
    return {
        "result_name": "sft_gpu" if gpu else "sft",
        "device": torch.cuda.get_device_name() if gpu else "cpu (2 cores shared with other users)",
        "precision": "bf16" if gpu else "fp32",
        "cpu_threads": torch.get_num_threads(),
        "repeats": REPEATS,
        "shapes": results,
        "peak_memory_note": "GPU: max allocated per run; CPU: the process's peak RSS so far, after each run",
        "targets": {"ratio_default_to_faster": 0.95, "ratio_default_to_plain": 0.7, "gpu_mfu": 0.25},
        "within_target": all(r["within_target"] for r in results),
    }


if __name__ == "__main__":
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import logging

    logging.basicConfig(level=logging.INFO, format="bench sft: %(message)s", stream=sys.stderr)
    print(json.dumps(bench_sft()))
