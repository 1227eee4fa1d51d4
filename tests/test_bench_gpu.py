"""`make bench-gpu` in its dry-run mode on a CPU: the same three parts as on the GPU (the SFT bench,
the generation bench, a ZeRO-3 smoke run of the stage), at toy size, each writing its result."""

import importlib.util
import json
import subprocess
import sys

import pytest
from conftest import REPO

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None,
                       reason="DeepSpeed is not installed (make setup installs it)"),
]


def test_the_gpu_acceptance_script_runs_its_plan_dry_on_a_cpu(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "bench/gpu.py"), "--dry-run", "--out", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["dry_run"] is True and summary["checks"]["zero3_ok"] is True
    sft = json.loads((tmp_path / "sft_gpu.json").read_text())
    (shape,) = sft["shapes"]
    assert sft["dry_run"] is True and shape["shape"] == "toy" and shape["steps"] == 2
    assert shape["runs"]["default"]["tokens_per_s"] > 0 and shape["ratio_default_to_plain"] > 0
    assert "padding_share_default" in shape and "attention" in shape["default_path"]
    assert sft["acceptance"]["targets"] == {"mfu": 0.25, "ratio_default_to_plain": 0.7, "generation_speedup": 3.0,
                                            "total_s": 480}
    generate = json.loads((tmp_path / "generate_gpu.json").read_text())
    assert generate["max_new_tokens"] == 16 and generate["speedup"] > 0 and generate["same_answers"] is True
    zero3 = json.loads((tmp_path / "zero3_gpu.json").read_text())
    assert zero3["ok"] and zero3["steps"] == 2 and zero3["generated_tokens"] > 0 and len(zero3["losses"]) == 2
