"""The `evol` command: inspect a record and its lineage, data statistics, help and error style."""

import json

import pytest
from click.testing import CliRunner
from test_eliminate import lineage_fixture

from evolinstruct.cli.main import cli
from evolinstruct.core import paths
from evolinstruct.core.records import write_records
from evolinstruct.eliminate.run import EliminateParams, eliminate
from evolinstruct.registry import get_registry


@pytest.fixture
def project(tmp_path):
    seeds, rounds = lineage_fixture()
    write_records(tmp_path / paths.SEED, seeds)
    for k, attempts in enumerate(rounds, start=1):
        write_records(tmp_path / paths.EVOLVED / f"round_{k}.jsonl", attempts)
    kept, removed, _ = eliminate(seeds, rounds, EliminateParams(benchmarks=["humaneval"]), get_registry().benchmarks())
    write_records(tmp_path / paths.KEPT, kept)
    write_records(tmp_path / paths.REMOVED, removed)
    return tmp_path, seeds, rounds


def evol(*args):
    return CliRunner().invoke(cli, list(args))


def test_inspect_shows_lineage_children_and_why_a_record_was_removed(project):
    path, (seed, planted), ((r1, _), (r2, r2_sorry)) = project
    result = evol("inspect", r2.id[:8], "--project", str(path), "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["record"]["id"] == r2.id and info["file"] == "data/evolved/round_2.jsonl"
    assert [a["id"] for a in info["lineage"]] == [r1.id, seed.id]
    assert info["fate"]["fate"] == "removed" and info["fate"]["reasons"][-1]["rule"] == "exact_duplicate"
    assert r1.id in info["fate"]["reasons"][-1]["evidence"]
    parent = json.loads(evol("inspect", r1.id, "--project", str(path), "--json").output)
    assert {c["id"] for c in parent["children"]} == {r2.id, r2_sorry.id} and parent["fate"]["fate"] == "kept"
    text = evol("inspect", planted.id, "--project", str(path)).output
    assert "fate: removed" in text and "decontamination: humaneval HumanEval/0" in text
    # The header agrees with the fate: a record eliminate removed is never shown as just "kept".
    header = evol("inspect", r2.id, "--project", str(path)).output.splitlines()[0]
    assert "kept by evolve, then removed by eliminate (exact_duplicate)" in header
    header = evol("inspect", r1.id, "--project", str(path)).output.splitlines()[0]
    assert "in the training set" in header


def test_inspect_errors_are_one_line_with_a_hint(project):
    path, _, _ = project
    result = evol("inspect", "nope", "--project", str(path))
    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0 and "no record with id 'nope'" in result.output and "hint:" in result.output
    verbose = evol("--verbose", "inspect", "nope", "--project", str(path))
    assert verbose.exit_code == 1 and "Traceback" in verbose.output
    empty = evol("stats", "--project", str(path / "elsewhere"))
    assert empty.exit_code == 1 and "dvc repro" in empty.output


def test_stats_per_round(project):
    path, _, _ = project
    data = json.loads(evol("stats", "--project", str(path), "--json").output)
    assert data["rounds"]["1"]["status"] == {"kept": 1, "failed": 1}
    assert data["rounds"]["2"]["rules"] == {"sorry": 1}
    assert data["training_records"] == 2 and data["removed_by_rule"]["decontamination"] == 1
    # What eliminate removed is counted per round, agreeing with data/eliminated/removed.jsonl.
    removed = sum(row["removed_by_eliminate"] for row in data["rounds"].values())
    assert removed == data["removed_records"] > 0 and data["rounds"]["2"]["removed_rules"] == {"exact_duplicate": 1, "sorry": 1}
    assert sum(row["training"] for row in data["rounds"].values()) == data["training_records"]
    text = evol("stats", "--project", str(path)).output
    assert "training set: 2 records" in text and "removed" in text.splitlines()[1]
    # Heuristic counts per round, as --json has them (docs/evolution.md).
    lines = text.splitlines()
    drawn = lines[lines.index("heuristics drawn per round (evolve attempts):") + 1:]
    for k in ("1", "2"):
        row = next(line for line in drawn if line.split()[0] == k)
        assert row.split(None, 1)[1] == ", ".join(f"{h} {n}" for h, n in data["rounds"][k]["heuristics"].items())


@pytest.mark.parametrize("command", ["plugins", "demo", "params", "estimate", "eval-samples", "inspect", "stats"])
def test_every_command_has_help(command):
    result = evol(command, "--help")
    assert result.exit_code == 0 and result.output.startswith("Usage: ") and "--help" in result.output
