"""Every shell command in the README and docs/ is either run here, exactly as printed, or named
with the test that runs it; a command added to the docs without either fails this file.

Commands are the lines of ```sh blocks and the first column of the README's command table.
Runnable ones run in order in one bash session, in a `git clone` of HEAD where `make demo` has
just run, so a command that only works in the author's checkout fails here. The virtual
environment is this checkout's (a fresh `make setup` is what `.ci/run` does on every clean
clone), linked in so that `. .venv/bin/activate` means what it says.
"""

from __future__ import annotations

import os
import re
import subprocess
import textwrap
from pathlib import Path

import pytest
from conftest import REPO

DOCS = ["README.md", *sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md"))]

#: Commands run elsewhere, by the test that runs them (or CI itself): the reason each is not run
#: here as printed. A prefix covers every documented command starting with it.
ELSEWHERE = {
    "make test": ".ci/run (CI runs `make test` on a clean clone: setup plus this whole suite)",
    "make test-fast": ".ci/run (the same suite without the slow tests; `make test` runs them all)",
    "make setup": ".ci/run (`make test` starts with `make setup` on a clean clone)",
    "make bench": "bench/run.py (benchmarks take minutes and rewrite bench/results/; run by hand)",
    "export OPENAI_API_KEY=": "tests/test_real_path.py (a key for the loopback server, in the environment)",
    "dvc repro": "tests/test_real_path.py::test_real_seed_data_through_an_openai_compatible_server_then_sft_and_evaluate "
                 "(the paper's params need the hub and a paid key: the test overrides them with -S)",
    "dvc exp show": "tests/test_real_path.py::test_real_seed_data_through_an_openai_compatible_server_then_sft_and_evaluate "
                    "and tests/test_ablation.py::test_the_documented_exp_show_commands_show_pass_at_1",
    "dvc plots show": "tests/test_real_path.py::test_real_seed_data_through_an_openai_compatible_server_then_sft_and_evaluate",
    "cp ~/Downloads/code_alpaca_20k.json": "tests/test_real_path.py (the Code Alpaca sample copied into data/raw/)",
    "dvc exp run -S seed.source=": "tests/test_real_path.py::test_real_seed_data_through_an_openai_compatible_server_then_sft_and_evaluate "
                                   "(the same overrides, with the loopback server's address and tiny models)",
    "dvc exp run -S rounds=4": "tests/test_ablation.py (one more round pays for that round only)",
    "dvc exp run --queue": "tests/test_ablation.py (queued rounds and family sweeps)",
    "dvc queue": "tests/test_ablation.py",
    "dvc plots diff": "tests/test_ablation.py::test_plots_diff_draws_pass_at_1_against_rounds",
    "git add -A && git commit": "tests/test_ablation.py (the baseline commit)",
    "accelerate launch": "tests/test_sft.py (accelerate launch of the stage; multi-GPU and DeepSpeed need GPUs)",
    "dvc exp run -S sft.": "tests/test_sft.py::test_dvc_repro_with_two_processes_trains_the_one_process_loss_curve "
                           "and tests/test_sft_deepspeed.py (2 CPU processes, ZeRO-2/3; every GPU and several "
                           "machines need them)",
    "python -m evolinstruct.stages.sft": "tests/test_sft.py (the stage's own command; a second machine's "
                                         "half of a two-node run needs that machine)",
    "dvc exp run -S evaluate.protocol=custom": "tests/test_evaluate_stage.py::test_protocols_set_the_sampling_and_custom_is_the_only_way_to_choose_it "
                                               "(n=200 on the demo would take minutes; paper_sampled runs here)",
    **{prefix: "tests/test_team.py::test_the_readme_team_commands_share_paid_rounds_through_a_dvc_remote "
                "(two people, a bare git repository and a local DVC remote)"
       for prefix in ("dvc remote add", "git commit -m", "dvc push", "git push", "git clone https://", "dvc pull",
                      "dvc exp run -n", "dvc exp push", "dvc exp pull", "dvc exp apply")},
    "evol eval-samples samples.jsonl --benchmark mbpp_plus": "tests/test_eval_samples.py::"
        "test_the_documented_evalplus_command_scores_a_local_mbpp_plus_file (EvalPlus files are not shipped; the "
        "test writes one)",
}


def fenced_blocks(text: str) -> list[tuple[str, list[str]]]:
    """(language, lines) of every fenced block, fences paired in order (a closing fence is never
    mistaken for an opening one)."""
    blocks, language, body = [], None, []
    for line in text.splitlines():
        if line.startswith("```"):
            if language is None:
                language, body = line[3:].strip(), []
            else:
                blocks.append((language, body))
                language = None
        elif language is not None:
            body.append(line)
    return blocks


#: Commands that read or rerun a pipeline: they run in the demo project `make demo` has just built
#: (the repository's own params are the paper's: the hub and a paid key).
IN_THE_DEMO = ("evol estimate", "evol inspect", "evol stats", "evol experiments", "dvc exp run -S evaluate.protocol=",
               "dvc exp run -S evaluate.postprocess=")


def documented_commands() -> list[tuple[str, str]]:
    """(file, command line) for every command, comments stripped, in document order."""
    found = []
    for name in DOCS:
        text = (REPO / name).read_text(encoding="utf-8")
        for language, lines in fenced_blocks(text):
            if language != "sh":
                continue
            for line in lines:
                command = re.sub(r"\s+#.*$", "", line).strip()
                if command and not command.startswith("#"):
                    found.append((name, command))
        if name == "README.md":
            table = text.split("## Commands", 1)[1]
            found += [(name, cell) for cell in re.findall(r"^\| `([^`]+)` \|", table, re.MULTILINE)]
    return found


def elsewhere(command: str) -> str | None:
    return next((why for prefix, why in ELSEWHERE.items() if command.startswith(prefix)), None)


def test_no_shell_block_is_left_untyped():
    """A command in an untyped block would escape this file: every block says what it is."""
    for name in DOCS:
        untyped = [lines for language, lines in fenced_blocks((REPO / name).read_text(encoding="utf-8")) if not language]
        assert not untyped, f"{name}: give each code block a language (sh for commands, text for output): {untyped[0]}"


def test_every_command_elsewhere_names_a_test_that_exists():
    for command, why in ELSEWHERE.items():
        target = why.split(" ", 1)[0]
        path, _, test = target.partition("::")
        assert (REPO / path).exists(), f"{command!r}: {path} does not exist"
        if test:
            assert f"def {test}(" in (REPO / path).read_text(), f"{command!r}: {target} does not exist"


def placeholders(command: str) -> str:
    """The README's command table shows syntax (`[--json]`, `ID`); run its plainest form."""
    command = re.sub(r"\s*\[(?:--|[A-Z])[^\]]*\]", "", command)  # `[--json]`, `[BENCH=...]`; not `[1,10]`
    return command.replace("SAMPLES.jsonl", "samples.jsonl").replace("NAME", "humaneval").replace("ID", "$SOME_ID")


@pytest.fixture(scope="module")
def clone_with_demo(tmp_path_factory) -> Path:
    clone = tmp_path_factory.mktemp("docs") / "evolinstruct"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    (clone / ".venv").symlink_to(REPO / ".venv")
    os.utime(clone / "pyproject.toml", (0, 0))  # older than .venv's install stamp: make sees it set up
    return clone


@pytest.mark.slow
def test_every_runnable_command_runs_as_printed(clone_with_demo, tmp_path):
    # In document order, from the clone's root, except what reads a pipeline's outputs.
    commands = [(name, placeholders(c), "$ROOT/demo-project" if c.startswith(IN_THE_DEMO) else "$ROOT")
                for name, c in documented_commands() if not elsewhere(c)]
    assert commands, "no commands found in the docs"
    samples = clone_with_demo / "demo-project/samples.jsonl"
    script = [
        "set -euo pipefail",
        "ROOT=$PWD",
        # What a demo leaves for the commands that take an argument: a record id, a samples file.
        "make demo",
        f"printf '%s\\n' '{{\"task_id\": \"HumanEval/0\", \"completion\": \"    return False\\n\"}}' > {samples}",
        "cp demo-project/samples.jsonl samples.jsonl",
        "export SOME_ID=$(head -c 200 demo-project/data/seed/seed.jsonl | sed -E 's/.*\"id\": *\"([^\"]+)\".*/\\1/')",
    ]
    for name, command, where in commands:
        script += [f"echo '>>> {name}: {command}' >&2", f"cd {where}", command]
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV",)}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if not p.startswith(str(REPO / ".venv")))
    proc = subprocess.run(["bash", "-c", "\n".join(script)], cwd=clone_with_demo, env=env, capture_output=True,
                          text=True, timeout=1200)
    ran = re.findall(r"^>>> (.*)$", proc.stderr, re.MULTILINE)
    assert proc.returncode == 0, f"failed at: {ran[-1] if ran else 'setup'}\n{textwrap.indent(proc.stderr[-4000:], '  ')}"
    assert len(ran) == len(commands)
