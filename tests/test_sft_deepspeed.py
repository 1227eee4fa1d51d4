"""DeepSpeed ZeRO-2 and ZeRO-3 through the stage, on CPU: DeepSpeed's CPU accelerator over gloo,
2 processes started by the stage itself (`sft.num_processes: 2`, `sft.deepspeed:` the repository's
configs, ZeRO-3 with its CPU offload as committed). The loss curve is the 1-process one within fp32
noise, and the model saved at the end (ZeRO-3 gathers the 16-bit weights; fp32 on a CPU) reloads
and generates. The first run builds DeepSpeed's CPU ops (shm comm, CPU Adam) once per machine."""

import importlib.util
import json

import pytest
from conftest import REPO
from test_sft import finish, losses, project, reload_and_generate

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None,
                       reason="DeepSpeed is not installed (make setup installs it)"),
]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, tiny_model):
    path = project(tmp_path_factory.mktemp("one"), tiny_model, max_steps=4, save_steps=100)
    finish(path)
    return losses(path)


@pytest.mark.parametrize("zero", ["zero2", "zero3"])
def test_zero_on_two_cpu_processes_trains_the_one_process_curve_and_saves_a_model(tmp_path, tiny_model,
                                                                                   one_process, zero):
    path = project(tmp_path, tiny_model, max_steps=4, save_steps=100, num_processes=2,
                   deepspeed=str(REPO / f"configs/{zero}.json"))
    err = finish(path)
    assert "starting 2 training processes" in err and "over 2 device(s)" in err
    assert losses(path) == pytest.approx(one_process, abs=1e-4)
    report = json.loads((path / "reports/sft.json").read_text())
    assert report["world_size"] == 2
    assert json.loads((path / "models/sft/sft_config.json").read_text())["deepspeed"].endswith(f"{zero}.json")
    assert reload_and_generate(path).completion_tokens > 0
