"""Every GPU from `dvc repro`: the stage starts itself under `accelerate launch` when it should.

dvc.yaml runs `python -m evolinstruct.stages.sft`, one process. When `sft.num_processes` asks for
more (`auto` = one per visible GPU), or DeepSpeed or an accelerate config file is named, that
process starts the same command under `accelerate launch` and waits for it: DDP over the
processes, or DeepSpeed when `sft.deepspeed` names a config (the Trainer reads it), or whatever
`sft.accelerate_config` describes (several machines). The command and the lock DVC records stay
those of a one-process run. A process already started by a launcher (torchrun, accelerate,
deepspeed, mpirun) trains as it is.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

from evolinstruct.core.errors import EvolError
from evolinstruct.core.params import SFTParams

log = logging.getLogger(__name__)
#: Set by the launchers the stage may run under: their processes never start launchers of their own.
LAUNCHER_ENV = ("WORLD_SIZE", "LOCAL_RANK", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "EVOLINSTRUCT_SFT_LAUNCHED")
STAGE_MODULE = "evolinstruct.stages.sft"


def under_launcher() -> bool:
    return any(name in os.environ for name in LAUNCHER_ENV)


def visible_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def resolve_processes(requested: int | str, gpus: int) -> int:
    """`auto` = every visible GPU, 1 without one; a number as given."""
    if requested == "auto":
        return max(1, gpus)
    return int(requested)


def free_port() -> int:
    """A free TCP port for the processes' rendezvous, so that two runs on one machine (two
    experiments, two test sessions) do not meet on torchrun's default port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_command(params: SFTParams, processes: int, gpus: int) -> list[str] | None:
    """The `accelerate launch` command that runs the stage as `processes` processes, or None when
    this process should train itself."""
    if under_launcher() or (processes == 1 and not params.deepspeed and not params.accelerate_config):
        return None
    cmd = [sys.executable, "-m", "accelerate.commands.launch"]
    if params.accelerate_config:
        if not Path(params.accelerate_config).is_file():
            raise EvolError(f"params.yaml: sft.accelerate_config: {params.accelerate_config}: no such file")
        cmd += ["--config_file", params.accelerate_config]
        if params.num_processes != "auto":
            cmd += ["--num_processes", str(processes)]
    elif processes == 1:
        # One process with DeepSpeed: accelerate refuses --multi_gpu below 2 processes, and its plain
        # launcher sets no rank variables for DeepSpeed; torchrun (what accelerate runs) does.
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1",
               "--master_port", str(free_port())]
    else:
        # torchrun's processes (accelerate's multi-GPU launcher), on GPUs or on CPU over gloo; DeepSpeed
        # is set up by the Trainer from sft.deepspeed, as under `torchrun ... --deepspeed`.
        cmd += ["--multi_gpu", "--num_processes", str(processes), "--num_machines", "1",
                "--main_process_port", str(free_port()), "--mixed_precision", "no", "--dynamo_backend", "no"]
    if params.deepspeed and not Path(params.deepspeed).is_file():
        raise EvolError(f"params.yaml: sft.deepspeed: {params.deepspeed}: no such file",
                        "configs/zero2.json and configs/zero3.json are in the repository")
    return [*cmd, "-m", STAGE_MODULE]


def relaunch(params: SFTParams) -> bool:
    """Run the stage under `accelerate launch` when the params ask for it; True when it did (this
    process then has nothing left to do). A failure of the launched run stops this one."""
    gpus = visible_gpus()
    processes = resolve_processes(params.num_processes, gpus)
    cmd = launch_command(params, processes, gpus)
    if cmd is None:
        return False
    if params.deepspeed:
        import importlib.util

        if importlib.util.find_spec("deepspeed") is None:
            raise EvolError("params.yaml: sft.deepspeed: DeepSpeed is not installed", "make setup installs it")
    log.info("starting %s training processes: %s", processes if not params.accelerate_config else "the configured",
             " ".join(cmd[1:]))
    env = {**os.environ, "EVOLINSTRUCT_SFT_LAUNCHED": "1"}  # its processes never launch again
    if not gpus:
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // processes)))
    code = subprocess.run(cmd, env=env).returncode
    if code != 0:
        raise EvolError(f"the training processes failed (exit code {code}); their errors are above")
    return True
