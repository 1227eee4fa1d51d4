"""`make bench-gpu`: the GPU acceptance run, on one H100-class GPU in under 8 minutes.

    python bench/gpu.py                 # on the GPU machine: writes bench/results/*_gpu.json
    python bench/gpu.py --dry-run       # the same plan at toy size on a CPU (tests/test_bench_gpu.py)

Three parts, each in a fresh interpreter:

sft:       bench/sft.py at TinyLlama-1.1B's shape in bf16: real tokens/s, MFU, the attention path
           the default chose, the padding share, against the padded and packed paths and a plain
           PyTorch loop in the same run (targets: MFU >= 25%, >= 0.7x the plain loop).
generate:  bench/generate.py: the evaluate stage's generation against one plain `generate` call
           on the same prompts (target: >= 3x).
zero3:     a ZeRO-3 smoke run of the `sft` stage on one GPU (`sft.deepspeed: configs/zero3.json`,
           which the stage starts under accelerate): it trains, the loss goes down, and the
           gathered 16-bit model reloads and generates.

Writes sft_gpu.json, generate_gpu.json and zero3_gpu.json to bench/results/ (or --out). The dry
run shrinks every part (toy model, 2 steps, 16 new tokens) and writes them to --out (by default a
temporary folder, so the committed GPU results stay), marked "dry_run": true.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
BUDGET_S = 8 * 60
DRY_ENV = {"EVOL_BENCH_SFT_SHAPES": "toy", "EVOL_BENCH_SFT_STEPS": "2", "EVOL_BENCH_SFT_REPEATS": "1",
           "EVOL_BENCH_SFT_RECORDS": "100", "EVOL_BENCH_TOKENS": "16"}
GPU_ENV = {"EVOL_BENCH_SFT_REPEATS": "2", "EVOL_BENCH_TOKENS": "512"}


def last_json(cmd: list[str], env: dict[str, str], cwd: Path) -> dict:
    proc = subprocess.run(cmd, cwd=cwd, env={**os.environ, **env}, text=True, stdout=subprocess.PIPE)
    if proc.returncode != 0:
        raise SystemExit(f"bench-gpu: {' '.join(cmd[1:])} failed (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def zero3_smoke(dry_run: bool) -> dict:
    """The stage with ZeRO-3 on this machine's one device: a few steps, then reload and generate."""
    import yaml
    from sft import CPU_SHAPES, GPU_SHAPE, scaffold

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        os.environ.setdefault("EVOL_BENCH_SFT_RECORDS", "200")
        scaffold(folder, CPU_SHAPES["toy"] if dry_run else GPU_SHAPE)
        steps = 2 if dry_run else 5
        params = {"base_model": "model", "learning_rate": 1e-4, "max_steps": steps, "max_length": 1024,
                  "warmup_steps": 0, "global_batch_size": 16, "logging_steps": 1, "save_steps": 10_000,
                  "num_processes": 1, "deepspeed": str(REPO / "configs/zero3.json")}
        (folder / "params.yaml").write_text(yaml.safe_dump({"sft": params}))
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "evolinstruct.stages.sft"], cwd=folder, text=True,
                              stderr=subprocess.PIPE, env={**os.environ, "TRANSFORMERS_VERBOSITY": "error"})
        wall = time.monotonic() - started
        if proc.returncode != 0:
            return {"ok": False, "exit_code": proc.returncode, "stderr_tail": proc.stderr[-3000:]}
        read = lambda p: json.loads((folder / p).read_text())  # noqa: E731
        losses = [row["loss"] for row in read("plots/sft_loss.json")]
        from evolinstruct.llm import hf

        model = hf.load_model(str(folder / "models/sft"))
        tokenizer = hf.load_tokenizer(str(folder / "models/sft"))
        (answer,) = hf.generate(model, tokenizer, ["### Instruction:\nAdd two numbers.\n\n### Response:"], 8)
        return {"ok": True, "steps": read("metrics/sft.json")["steps"], "losses": losses,
                "tokens_per_s": read("metrics/sft.json")["tokens_per_s"], "wall_s": round(wall, 1),
                "deepspeed_config": "configs/zero3.json", "world_size": read("reports/sft.json")["world_size"],
                "saved_dtype": str(next(model.parameters()).dtype), "generated_tokens": answer.completion_tokens}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="toy sizes on a CPU, to check the plan")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default: bench/results, or a "
                                                                  "temporary one for --dry-run)")
    args = parser.parse_args(argv)
    import torch

    if not args.dry_run and not torch.cuda.is_available():
        raise SystemExit("bench-gpu: no CUDA GPU here; `make bench-gpu DRY_RUN=1` checks the plan on a CPU")
    out = args.out or (Path(tempfile.mkdtemp(prefix="bench-gpu-")) if args.dry_run else REPO / "bench/results")
    out.mkdir(parents=True, exist_ok=True)
    env = DRY_ENV if args.dry_run else GPU_ENV
    os.environ.update(env)
    started = time.monotonic()
    device = "cpu (dry run)" if args.dry_run else torch.cuda.get_device_name()
    results = {
        "sft_gpu": last_json([sys.executable, str(REPO / "bench/sft.py")], env, REPO),
        "generate_gpu": last_json([sys.executable, str(REPO / "bench/generate.py")], env, REPO),
        "zero3_gpu": zero3_smoke(args.dry_run),
    }
    total = round(time.monotonic() - started, 1)
    sft = results["sft_gpu"]["shapes"][0]
    checks = {
        "mfu": sft["runs"]["default"].get("mfu"),
        "ratio_default_to_plain": sft["ratio_default_to_plain"],
        "generation_speedup": results["generate_gpu"]["speedup"],
        "zero3_ok": results["zero3_gpu"]["ok"],
        "total_s": total,
    }
    targets = {"mfu": 0.25, "ratio_default_to_plain": 0.7, "generation_speedup": 3.0, "total_s": BUDGET_S}
    for name, result in results.items():
        result.pop("result_name", None)
        body = {"device": device, "dry_run": args.dry_run, **result}
        if name == "sft_gpu":
            body["acceptance"] = {"checks": checks, "targets": targets}
        (out / f"{name}.json").write_text(json.dumps(body, indent=2) + "\n")
    print(json.dumps({"out": str(out), "device": device, "dry_run": args.dry_run, "checks": checks,
                      "targets": targets, "attention": sft["default_path"],
                      "padding_share": sft["padding_share_default"]}))


if __name__ == "__main__":
    main(sys.argv[1:])
