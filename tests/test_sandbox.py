import pytest

from evolinstruct.sandbox import Limits, run_many, run_program

FAST = Limits(timeout=2.0)


@pytest.mark.parametrize("program, passed, result", [
    ("assert sum([1, 2]) == 3\n", True, "passed"),
    ("assert 1 == 2\n", False, "failed: AssertionError"),
    ("import sys\nsys.exit(0)\nassert False\n", False, "failed"),
    ("import os\nos._exit(0)\n", False, "failed"),
    ("while True:\n    pass\n", False, "timed out"),
    ("import socket\nsocket.create_connection(('127.0.0.1', 9), timeout=1)\n", False, "failed"),
    ("print('x' * 10_000_000)\n", False, "failed: output limit exceeded"),
    ("x = bytearray(8 * 1024 ** 3)\n", False, "failed: MemoryError"),
])
def test_outcomes(program, passed, result):
    outcome = run_program(program, FAST)
    assert outcome.passed is passed and outcome.result.startswith(result), outcome


def test_program_cannot_write_outside_its_folder(tmp_path):
    target = tmp_path / "pwned"
    outcome = run_program(f"open({str(target)!r}, 'w').write('x')\n", FAST)
    assert not outcome.passed and not target.exists()


def test_run_many_keeps_order():
    outcomes = run_many([f"assert {i} % 2 == 0\n" for i in range(6)], FAST, workers=3)
    assert [o.passed for o in outcomes] == [True, False, True, False, True, False]
