"""The SFT stage on a tiny random model: the loss goes down, the saved model reloads and generates,
LoRA saves a merged model, an interrupted run resumes, and packing without separating attention is
refused."""

import json
import os
import signal
import subprocess
import time

import pytest
import yaml
from conftest import finish_stage, start_stage

from evolinstruct.core.errors import EvolError
from evolinstruct.core.records import seed_record, write_records
from evolinstruct.train.model import check_packing, check_quantization

PAIRS = [("Write a function that adds two numbers.", "def add(a, b):\n    return a + b"),
         ("Reverse a string.", "def reverse(s):\n    return s[::-1]"),
         ("Return the maximum of a list.", "def biggest(xs):\n    return max(xs)"),
         ("Check whether a number is even.", "def is_even(n):\n    return n % 2 == 0")]


def project(tmp_path, tiny_model, **sft):
    import datasets

    records = [seed_record(i, o) for i, o in PAIRS] * 8
    write_records(tmp_path / "data/merged/train.jsonl", records)
    datasets.Dataset.from_list([{"id": r.id, "instruction": r.instruction, "output": r.output, "round": 0}
                                for r in records]).save_to_disk(str(tmp_path / "data/merged/dataset"))
    params = {"sft": {"base_model": str(tiny_model), "learning_rate": 3e-3, "epochs": 1.0, "max_steps": 24,
                      "max_length": 128, "warmup_steps": 2, "global_batch_size": 8, "per_device_batch_size": 4,
                      "gradient_checkpointing": False, "logging_steps": 1, "save_steps": 4, **sft}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp_path


def sft(path):
    return start_stage("sft", path)


def finish(path):
    code, err = finish_stage("sft", path)
    assert code == 0, err
    return err


def losses(path):
    return [row["loss"] for row in json.loads((path / "plots/sft_loss.json").read_text())]


def reload_and_generate(path):
    from evolinstruct.llm import hf

    model, tokenizer = hf.load_model(str(path / "models/sft"), device="cpu"), hf.load_tokenizer(str(path / "models/sft"))
    (out,) = hf.generate(model, tokenizer, ["### Instruction:\nReverse a string.\n\n### Response:"], 8)
    return out


def test_full_fine_tuning_lowers_the_loss_and_the_model_reloads_and_generates(tmp_path, tiny_model):
    path = project(tmp_path, tiny_model)
    err = finish(path)
    assert "global batch 8 = 4 per device x 1 devices x 2 accumulation steps" in err
    curve = losses(path)
    assert len(curve) == 24 and sum(curve[-4:]) / 4 < 0.7 * sum(curve[:4]) / 4
    config = json.loads((path / "models/sft/training_config.json").read_text())
    assert config["accumulation_steps"] == 2 and len(config["train_data_sha256"]) == 64
    assert config["base_model_commit"] is None and config["learning_rate"] == 3e-3
    metrics = json.loads((path / "metrics/sft.json").read_text())
    assert metrics["steps"] == 24 and metrics["tokens_per_s"] > 0 and metrics["wall_time_s"] > 0
    out = reload_and_generate(path)
    assert out.completion_tokens > 0


def test_lora_trains_adapters_only_and_saves_a_merged_model(tmp_path, tiny_model):
    path = project(tmp_path, tiny_model, lora_r=8, lora_alpha=16, learning_rate=1e-2)
    finish(path)
    curve = losses(path)
    assert sum(curve[-4:]) / 4 < sum(curve[:4]) / 4
    metrics = json.loads((path / "metrics/sft.json").read_text())
    full = json.loads((tmp_path / "models/sft/config.json").read_text())
    assert 0 < metrics["trainable_parameters"] < full["hidden_size"] * full["vocab_size"]
    assert (path / "models/sft/adapter/adapter_config.json").exists()
    assert not (path / "models/sft/adapter_config.json").exists()  # the top level is a plain model
    assert reload_and_generate(path).completion_tokens > 0


def test_an_interrupted_run_resumes_from_its_last_checkpoint(tmp_path, tiny_model):
    path = project(tmp_path, tiny_model, max_steps=16)
    proc = sft(path)
    checkpoints = path / ".evolinstruct/sft-checkpoints"
    deadline = time.monotonic() + 300
    while not list(checkpoints.glob("*/checkpoint-8")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "training finished before it could be interrupted"
    err = finish(path)
    assert "resuming from" in err and "checkpoint-" in err
    assert json.loads((path / "metrics/sft.json").read_text())["steps"] == 16
    assert not checkpoints.exists() or not any(checkpoints.iterdir())  # spent checkpoints are removed


def test_packing_is_refused_unless_attention_keeps_examples_apart(tmp_path, tiny_model):
    with pytest.raises(EvolError, match="packed examples would attend to each other"):
        check_packing(True, "")
    with pytest.raises(EvolError, match="attend to each other with attention 'sdpa'"):
        check_packing(True, "sdpa")
    check_packing(True, "flash_attention_2")
    check_packing(False, "")
    path = project(tmp_path, tiny_model, packing=True)
    proc = sft(path)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1 and "sft.packing" in err and "flash_attention_2" in err


def test_packed_batches_restart_positions_and_mask_each_examples_first_token():
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    batch = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)(
        [{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8, 9], "labels": [-100, 9]}])
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1]]  # what flash attention uses to keep them apart
    assert batch["labels"].tolist() == [[-100, 6, 7, -100, 9]]


def test_quantization_needs_lora_and_a_gpu():
    with pytest.raises(EvolError, match="only be trained through LoRA"):
        check_quantization("4bit", 0)
    with pytest.raises(EvolError, match="expected one of none, 4bit, 8bit"):
        check_quantization("3bit", 8)
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(EvolError, match="needs a CUDA GPU and bitsandbytes"):
            check_quantization("4bit", 8)


def test_the_stage_runs_unchanged_under_accelerate_launch(tmp_path, tiny_model):
    path = project(tmp_path, tiny_model, max_steps=4)
    env = {**os.environ, "TRANSFORMERS_VERBOSITY": "error"}
    proc = subprocess.run(["accelerate", "launch", "--num_processes", "1", "--cpu", "-m", "evolinstruct.stages.sft"],
                          cwd=path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((path / "metrics/sft.json").read_text())["steps"] == 4
    assert (path / "models/sft/config.json").exists()
