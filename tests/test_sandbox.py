"""The sandbox survives hostile programs, scores them as failed, and leaves nothing behind."""

import os
import time
from pathlib import Path

import pytest

from evolinstruct.evaluate.sandbox import Limits, network_isolated, run_many, run_program

FAST = Limits(timeout=2.0)
ROOT = os.geteuid() == 0


def nobody_processes():
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == 65534 and (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.mark.parametrize("program, passed, result", [
    ("assert sum([1, 2]) == 3\n", True, "passed"),
    ("assert 1 == 2\n", False, "failed: AssertionError"),
    ("import sys\nsys.exit(0)\nassert False\n", False, "failed"),
    ("import os\nos._exit(0)\n", False, "failed"),
    ("while True:\n    pass\n", False, "timed out"),
    ("import time\ntime.sleep(60)\n", False, "timed out"),
    ("import socket\nsocket.create_connection(('127.0.0.1', 9), timeout=1)\n", False, "failed"),
    ("import socket\nsocket.create_connection(('8.8.8.8', 53), timeout=1)\n", False, "failed"),
    ("print('x' * 10_000_000)\n", False, "failed: output limit exceeded"),
    ("while True:\n    print('flood' * 1000)\n", False, "failed: output limit exceeded"),
    ("x = bytearray(8 * 1024 ** 3)\n", False, "failed: MemoryError"),
    ("chunks = []\nwhile True:\n    chunks.append(bytearray(50 * 1024 ** 2))\n", False, "failed: MemoryError"),
    ("import sys\nsys.stdout.write(input())\n", False, "failed: EOFError"),  # stdin is closed
])
def test_outcomes(program, passed, result):
    outcome = run_program(program, FAST)
    assert outcome.passed is passed and outcome.result.startswith(result), outcome


def test_the_program_runs_in_an_empty_folder_of_its_own():
    outcome = run_program("import os\nprint(sorted(os.listdir('.')))\nassert os.listdir('.') == ['out', 'program.py'] or True\n", FAST)
    assert outcome.passed and "['out', 'program.py']" in outcome.output


def test_a_program_cannot_write_or_delete_outside_its_folder(tmp_path):
    target, victim = tmp_path / "pwned", tmp_path / "victim.txt"
    victim.write_text("keep me")
    tmp_path.chmod(0o755)
    program = (f"import os, shutil\nopen({str(target)!r}, 'w').write('x')\n")
    assert not run_program(program, FAST).passed and not target.exists()
    assert not run_program(f"import os\nos.remove({str(victim)!r})\n", FAST).passed
    assert not run_program(f"import shutil\nshutil.rmtree({str(tmp_path)!r})\n", FAST).passed
    assert victim.read_text() == "keep me"


@pytest.mark.skipif(not ROOT, reason="privilege drop needs root")
def test_a_program_cannot_regain_root_or_signal_the_evaluator():
    assert not run_program("import os\nos.setuid(0)\n", FAST).passed
    outcome = run_program("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n", FAST)
    assert not outcome.passed and "PermissionError" in outcome.result
    assert not run_program(f"import os, signal\nos.kill({os.getpid()}, signal.SIGKILL)\n", FAST).passed
    assert run_program("assert True\n", FAST).passed  # the evaluator and the supervisor are alive


def test_the_network_is_unreachable():
    program = "import socket\ns = socket.socket()\ns.settimeout(1)\ns.connect(('1.1.1.1', 80))\n"
    outcome = run_program(program, FAST)
    assert not outcome.passed
    if network_isolated():
        assert "Network is unreachable" in outcome.result or "OSError" in outcome.result


@pytest.mark.skipif(not ROOT, reason="counting the sandbox user's processes needs the drop to nobody")
def test_fork_bombs_and_background_children_are_killed_and_leave_nothing_behind():
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    orphan = "import subprocess\nsubprocess.Popen(['sleep', '300'])\n"
    outcomes = run_many([bomb, orphan, "assert 2 + 2 == 4\n"], Limits(timeout=2.0), workers=3)
    assert not outcomes[0].passed and outcomes[2].passed
    deadline = time.monotonic() + 5
    while nobody_processes() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert nobody_processes() == []
    assert run_program("assert True\n", FAST).passed  # the process budget is free again


def test_run_many_keeps_order():
    outcomes = run_many([f"assert {i} % 2 == 0\n" for i in range(6)], FAST, workers=3)
    assert [o.passed for o in outcomes] == [True, False, True, False, True, False]


def test_programs_in_flight_when_the_supervisor_dies_are_run_again():
    import threading

    from evolinstruct.evaluate import sandbox

    # The supervisor dies mid-run (here killed from outside, as the OOM killer would).
    threading.Timer(0.3, sandbox.supervisor().proc.kill).start()
    programs = ["import time\ntime.sleep(1)\n", "import time\ntime.sleep(0.8)\nassert True\n", "assert 1 + 1 == 2\n"]
    outcomes = run_many(programs, Limits(timeout=5.0), workers=3)
    assert [o.passed for o in outcomes] == [True, True, True]  # each got a verdict of its own
    assert run_program("assert True\n", FAST).passed  # and a fresh supervisor serves the next run
