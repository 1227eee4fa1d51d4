import json

import pytest

from evolinstruct.core.errors import RecordError
from evolinstruct.core.records import Rejection, evolved_record, read_records, seed_record, write_records


def test_round_trip_keeps_every_field(tmp_path):
    seed = seed_record("Write add(a, b).", "def add(a, b):\n    return a + b", source="data/raw/x.jsonl")
    child = evolved_record(seed, 1, "code_constraints", "Write add(a, b) for ints only.", "def add...", "openai",
                           "gpt-x", "eliminated", [Rejection("sorry", "3 words")])
    path = tmp_path / "r.jsonl"
    assert write_records(path, [seed, child]) == 2
    assert read_records(path) == [seed, child]


def test_ids_are_content_derived_and_stable():
    a = seed_record("same", "answer")
    assert a.id == seed_record("same", "answer").id
    assert a.id != seed_record("same", "other answer").id
    child = evolved_record(a, 1, "h", "harder", "resp", "b", "m", "kept")
    assert child.id == evolved_record(a, 1, "h", "harder", "resp", "b", "m", "kept").id
    assert child.parent_id == a.id and child.root_id == a.id


@pytest.mark.parametrize(
    "line, field, problem",
    [
        ('{"id": "a", "output": "o"}', "instruction", "missing"),
        ('{"id": "a", "instruction": null, "output": "o"}', "instruction", "expected str, got null"),
        ('{"id": "a", "instruction": "i", "output": "o", "round": "1"}', "round", "expected int"),
        ('{"id": "a", "instruction": "i", "output": "o", "status": "great"}', "status", "expected one of"),
        ('{"id": "a", "instruction": "i", "output": "o", "colour": 1}', "colour", "unknown field"),
        ('{"id": "a", "instruction": "i", "output": "o", "reasons": [{"evidence": "x"}]}', "reasons[0].rule", "expected"),
        ('{"id": "a", "instruction": "i"', "<json>", "invalid JSON"),
    ],
)
def test_bad_records_name_file_line_and_field(tmp_path, line, field, problem):
    path = tmp_path / "bad.jsonl"
    good = json.dumps({"id": "ok", "instruction": "i", "output": "o"})
    path.write_text(f"{good}\n\n{line}\n")
    with pytest.raises(RecordError) as caught:
        read_records(path)
    assert caught.value.line == 3 and caught.value.field == field
    assert str(caught.value).startswith(f"{path}:3: field '{field}':") and problem in str(caught.value)


def test_a_failed_write_leaves_the_old_file_untouched(tmp_path):
    path = tmp_path / "out.jsonl"
    write_records(path, [seed_record("keep", "me")])
    before = path.read_bytes()

    def exploding():
        yield seed_record("half", "written")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_records(path, exploding())
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]  # no temp file left behind
