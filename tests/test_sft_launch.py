"""When the sft stage starts itself under a launcher, and with which command (no training here)."""

import sys

import pytest

from evolinstruct.core.params import SFTParams
from evolinstruct.train.launch import launch_command, resolve_processes

LAUNCHER_VARS = ("WORLD_SIZE", "LOCAL_RANK", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "EVOLINSTRUCT_SFT_LAUNCHED")


@pytest.fixture(autouse=True)
def no_launcher(monkeypatch):
    for name in LAUNCHER_VARS:
        monkeypatch.delenv(name, raising=False)


def test_auto_is_every_visible_gpu_and_one_on_a_cpu():
    assert resolve_processes("auto", 0) == 1 and resolve_processes("auto", 8) == 8 and resolve_processes(3, 8) == 3


def test_one_process_without_deepspeed_trains_in_place():
    assert launch_command(SFTParams(num_processes=1), 1, 0) is None


def test_several_processes_start_accelerate_on_a_free_port_running_the_same_stage():
    cmd = launch_command(SFTParams(num_processes=4), 4, 4)
    assert cmd[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert cmd[cmd.index("--num_processes") + 1] == "4" and "--multi_gpu" in cmd
    assert int(cmd[cmd.index("--main_process_port") + 1]) > 0
    assert cmd[-2:] == ["-m", "evolinstruct.stages.sft"]


def test_deepspeed_on_one_process_goes_through_torchrun(tmp_path):
    config = tmp_path / "zero3.json"
    config.write_text("{}")
    cmd = launch_command(SFTParams(num_processes=1, deepspeed=str(config)), 1, 1)
    assert cmd[1:5] == ["-m", "torch.distributed.run", "--nproc_per_node", "1"]


@pytest.mark.parametrize("var", LAUNCHER_VARS)
def test_a_process_under_a_launcher_never_launches_again(monkeypatch, var):
    monkeypatch.setenv(var, "2")
    assert launch_command(SFTParams(num_processes=2, deepspeed="configs/zero2.json"), 2, 2) is None


def test_an_accelerate_config_file_is_passed_and_must_exist(tmp_path):
    from evolinstruct.core.errors import EvolError

    config = tmp_path / "two_nodes.yaml"
    with pytest.raises(EvolError, match="sft.accelerate_config: .*two_nodes.yaml: no such file"):
        launch_command(SFTParams(accelerate_config=str(config)), 1, 0)
    config.write_text("num_machines: 2\n")
    cmd = launch_command(SFTParams(accelerate_config=str(config)), 1, 0)
    assert cmd[3:5] == ["--config_file", str(config)] and "--num_processes" not in cmd
