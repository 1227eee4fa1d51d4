"""The SFT stage on a tiny random model: the loss goes down, the saved model reloads and generates,
LoRA saves a merged model, an interrupted run resumes, tokens/s counts the real tokens, long examples
are counted, tokenization is cached, and the padded fallback trains the same global batches."""

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
from evolinstruct.train.model import check_quantization

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
                      "max_length": 128, "warmup_steps": 2, "global_batch_size": 8,
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


def tokenized_lengths(tiny_model, max_length=128):
    from transformers import AutoTokenizer

    from evolinstruct.train.data import tokenize_pair

    tok = AutoTokenizer.from_pretrained(tiny_model)
    return [len(tokenize_pair(tok, i, o, max_length)["input_ids"]) for i, o in PAIRS]


def test_full_fine_tuning_lowers_the_loss_and_the_model_reloads_and_generates(tmp_path, tiny_model):
    # packing: true packs with sdpa's dense block-diagonal mask (the default pads on a CPU, see below)
    path = project(tmp_path, tiny_model, packing=True, extra_args={"max_grad_norm": 0.5, "adam_beta2": 0.95})
    err = finish(path)
    assert "attention sdpa keeps packed examples apart" in err
    assert "padding-free micro-batches of up to" in err and "8 examples per optimizer step" in err
    assert "gradient checkpointing off (set by sft.gradient_checkpointing" in err
    curve = losses(path)
    assert len(curve) == 24 and sum(curve[-4:]) / 4 < 0.7 * sum(curve[:4]) / 4
    config = json.loads((path / "models/sft/training_config.json").read_text())
    assert config["padding_free"] and config["attention"] == "sdpa" and len(config["train_data_sha256"]) == 64
    assert config["base_model_commit"] is None and config["learning_rate"] == 3e-3
    metrics = json.loads((path / "metrics/sft.json").read_text())
    assert metrics["steps"] == 24 and metrics["padding_share"] == 0.0 and metrics["examples_trained"] == 32
    assert metrics["final_loss"] == pytest.approx(curve[-1], abs=1e-5) and metrics["examples_dropped_for_length"] == 0
    report = json.loads((path / "reports/sft.json").read_text())
    # 24 steps of 8 over 32 examples = 6 epochs: the real tokens counted, not an estimate
    assert report["tokens_trained"] == 6 * 8 * sum(tokenized_lengths(tiny_model))
    assert metrics["tokens_per_s"] == pytest.approx(report["tokens_trained"] / report["wall_time_s"], rel=0.01)
    out = reload_and_generate(path)
    assert out.completion_tokens > 0
    # TRL's resolved SFTConfig is saved with the model: the group's fields and the extra_args
    saved = json.loads((path / "models/sft/sft_config.json").read_text())
    assert saved["max_grad_norm"] == 0.5 and saved["adam_beta2"] == 0.95 and saved["learning_rate"] == 3e-3
    assert saved["max_length"] == 128 and saved["dataset_kwargs"] == {"skip_prepare_dataset": True}
    # DVCLive: one row per logged step, with the learning rate, grad norm and real tokens/s
    live = path / "dvclive/sft"
    rows = (live / "plots/metrics/loss.tsv").read_text().splitlines()
    assert rows[0].split("\t") == ["step", "loss"] and len(rows) == 25
    assert [float(r.split("\t")[1]) for r in rows[1:]] == pytest.approx(curve, abs=1e-6)
    summary = json.loads((live / "metrics.json").read_text())
    assert summary["step"] == 24 and summary["loss"] == pytest.approx(curve[-1], abs=1e-6)
    assert summary["tokens_per_s"] > 0 and summary["grad_norm"] > 0 and summary["learning_rate"] > 0
    assert len((live / "plots/metrics/learning_rate.tsv").read_text().splitlines()) == 25


def test_a_run_shorter_than_logging_steps_logs_its_last_step_and_warns_of_a_long_warmup(tmp_path, tiny_model):
    """3 steps, logging every 10, warmup 5: the loss curve and final_loss still have step 3, the
    warmup warning names both numbers, and on a CPU (no variable-length attention kernel) the
    default pads instead of packing with a dense mask."""
    path = project(tmp_path, tiny_model, max_steps=3, logging_steps=10, warmup_steps=5, save_steps=100)
    err = finish(path)
    assert "sft.warmup_steps=5 is longer than the run's 3 optimizer steps" in err
    assert "padded micro-batches of examples of similar length: no variable-length attention kernel" in err
    assert [row["step"] for row in json.loads((path / "plots/sft_loss.json").read_text())] == [3]
    metrics = json.loads((path / "metrics/sft.json").read_text())
    assert metrics["final_loss"] is not None and metrics["steps"] == 3 and metrics["padding_share"] > 0
    assert json.loads((path / "dvclive/sft/metrics.json").read_text())["step"] == 3


@pytest.mark.parametrize(("extra", "message"), [
    ({"max_grad_nrom": 1.0}, "sft.extra_args.max_grad_nrom: not a field of TRL's SFTConfig; did you mean "
                             "'max_grad_norm'?"),
    ({"learning_rate": 1e-4}, "sft.extra_args.learning_rate: the sft group sets SFTConfig.learning_rate; "
                              "set sft.learning_rate instead"),
    ({"gradient_accumulation_steps": 4}, "sft.extra_args.gradient_accumulation_steps: SFTConfig."
                                         "gradient_accumulation_steps is set by the stage"),
])
def test_extra_args_are_checked_against_sftconfig_in_one_line(tmp_path, tiny_model, extra, message):
    path = project(tmp_path, tiny_model, extra_args=extra)
    code, err = finish_stage("sft", path)
    lines = [line for line in err.splitlines() if "error" in line]
    assert code == 1 and len(lines) == 1 and message in lines[0], err[-2000:]
    assert not (path / "models").exists()


def test_lora_trains_adapters_only_and_saves_a_merged_model(tmp_path, tiny_model):
    path = project(tmp_path, tiny_model, lora_r=8, lora_alpha=16, learning_rate=1e-2)
    finish(path)
    curve = losses(path)
    assert sum(curve[-4:]) / 4 < sum(curve[:4]) / 4
    report = json.loads((path / "reports/sft.json").read_text())
    full = json.loads((tmp_path / "models/sft/config.json").read_text())
    assert 0 < report["trainable_parameters"] < full["hidden_size"] * full["vocab_size"]
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


def test_the_padded_fallback_trains_the_same_global_batches_to_the_same_loss(tmp_path, tiny_model):
    """packing: false pads (bucketed by length); same data and seed give the same loss curve."""
    packed = project(tmp_path / "packed", tiny_model, max_steps=6, logging_steps=1, packing=True)
    padded = project(tmp_path / "padded", tiny_model, max_steps=6, logging_steps=1, packing=False)
    finish(packed)
    err = finish(padded)
    assert "padded micro-batches of up to" in err
    assert losses(padded) == pytest.approx(losses(packed), abs=2e-4)
    assert 0 < json.loads((padded / "metrics/sft.json").read_text())["padding_share"] < 0.5


def test_long_examples_are_counted_and_tokenization_is_cached(tmp_path, tiny_model):
    import datasets

    fits = max(tokenized_lengths(tiny_model))  # every pair fits; the two long records do not
    path = project(tmp_path, tiny_model, max_steps=2, max_length=fits)
    long = [seed_record("Explain " + "in detail " * 80, "Done."), seed_record("Short.", "x = 1\n" * 80)]
    records = [seed_record(i, o) for i, o in PAIRS] * 8 + long
    write_records(path / "data/merged/train.jsonl", records)
    datasets.Dataset.from_list([{"id": r.id, "instruction": r.instruction, "output": r.output, "round": 0}
                                for r in records]).save_to_disk(str(path / "data/merged/dataset"))
    err = finish(path)
    assert f"2 of 34 examples are longer than sft.max_length={fits}: 1 truncated to it, 1 dropped" in err
    metrics = json.loads((path / "metrics/sft.json").read_text())
    assert metrics["examples_dropped_for_length"] == 1 and metrics["examples_trained"] == 33
    params = yaml.safe_load((path / "params.yaml").read_text())
    params["sft"]["learning_rate"] = 1e-3  # an `-S sft.learning_rate=...` experiment
    (path / "params.yaml").write_text(yaml.safe_dump(params))
    err = finish(path)
    assert "tokenized 34 examples (from the cache)" in err
    assert json.loads((path / "reports/sft.json").read_text())["tokenization_cached"] is True


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


def dvc_project(path):
    """`path` as a DVC repository whose dvc.yaml is the project's own sft stage (data/merged stands in
    for the upstream stages' output)."""
    from conftest import REPO

    from evolinstruct.demo.project import dvc_env

    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["sft"]
    (path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"sft": stage}}))
    # The stage's dep for a local base model; the repository ships it with a README (here the tiny
    # model stays where the session fixture built it).
    (path / "models/base").mkdir(parents=True, exist_ok=True)
    (path / "models/base/README.md").write_text("local base models\n")
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "config", "core.analytics", "false"],
                ["git", "add", "-A"], ["git", "-c", "user.name=t", "-c", "user.email=t@t.invalid", "commit", "-qm", "x"]):
        subprocess.run(cmd, cwd=path, check=True, env=dvc_env())
    return dvc_env()


@pytest.mark.slow
def test_dvc_repro_with_two_processes_trains_the_one_process_loss_curve(tmp_path, tiny_model):
    """`sft.num_processes: 2` under `dvc repro`: the stage starts itself under accelerate (DDP over 2
    CPU processes, gloo); each rank takes its share of every global batch and the loss is normalised
    by the response tokens of the whole global batch, so the curve is the 1-process one. dvc.yaml's
    command is unchanged."""
    one = project(tmp_path / "one", tiny_model, max_steps=6, save_steps=100)
    two = project(tmp_path / "two", tiny_model, max_steps=6, save_steps=100, num_processes=2)
    finish(one)
    env = dvc_project(two)
    proc = subprocess.run(["dvc", "repro", "sft"], cwd=two, env={**env, "TRANSFORMERS_VERBOSITY": "error"},
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert "starting 2 training processes" in proc.stderr
    assert "8 examples per optimizer step over 2 device(s)" in proc.stderr
    assert losses(two) == pytest.approx(losses(one), abs=1e-4)
    report = json.loads((two / "reports/sft.json").read_text())
    assert report["world_size"] == 2
    assert report["tokens_trained"] == json.loads((one / "reports/sft.json").read_text())["tokens_trained"]
    lock = yaml.safe_load((two / "dvc.lock").read_text())["stages"]["sft"]
    assert lock["cmd"] == "python -m evolinstruct.stages.sft" and lock["params"]["params.yaml"]["sft"]["num_processes"] == 2
