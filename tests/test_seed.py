"""The seed stage on data as it really is: bad records and duplicates reported in
data/seed/rejects.jsonl (or stopping the stage), and one clear line for a file that cannot be read."""

import json

import pytest
from conftest import SHARED, finish_stage
from evolinstruct.stages import seed as stage

from evolinstruct.core.records import read_records
from evolinstruct.core.stage import run_stage

CODE_ALPACA = SHARED / "data/code_alpaca_2k.json"


def project(tmp_path, monkeypatch, name: str, content: bytes | str, **params) -> None:
    """A project folder holding data/raw/<name> and a params.yaml whose seed group reads it."""
    raw = tmp_path / "data/raw"
    raw.mkdir(parents=True)
    (raw / name).write_bytes(content.encode() if isinstance(content, str) else content)
    lines = [f"  source: data/raw/{name}", *(f"  {key}: {json.dumps(value)}" for key, value in params.items())]
    (tmp_path / "params.yaml").write_text("seed:\n" + "\n".join(lines) + "\n")
    monkeypatch.chdir(tmp_path)


def fails_with_one_line(capsys) -> str:
    """Run the stage as DVC does; it must exit 1 with exactly one line on stderr (no traceback)."""
    with pytest.raises(SystemExit) as caught:
        run_stage("seed", stage.main)
    assert caught.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def rejects(tmp_path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "data/seed/rejects.jsonl").read_text().splitlines()]


def jsonl(*rows) -> str:
    return "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows)


GOOD = [{"instruction": f"Write function number {i}.", "input": "", "output": f"def f{i}(): pass"} for i in range(20)]


def test_bad_records_and_duplicates_are_reported_with_place_field_and_reason(tmp_path, monkeypatch):
    project(tmp_path, monkeypatch, "seeds.jsonl", jsonl(
        *GOOD[:3],
        {"instruction": "No answer.", "output": "  "},                        # line 4
        {"output": "an answer without a question"},                          # line 5
        '{"instruction": "cut off',                                          # line 6
        ["not", "an", "object"],                                             # line 7
        {"instruction": "Numbers?", "output": 42},                           # line 8
        GOOD[1],                                                             # line 9: duplicate of line 2
        {"instruction": "Sum a list.", "input": ["x"], "output": "sum(xs)"},  # line 10
    ), max_invalid_share=0.9)
    stage.main()
    got = {(r["line"], r["field"], r["reason"]) for r in rejects(tmp_path)}
    assert got == {(4, "output", "empty"), (5, "instruction", "missing"), (6, None, "invalid_json"),
                   (7, None, "not_an_object"), (8, "output", "not_a_string"), (9, None, "duplicate"),
                   (10, "input", "not_a_string")}
    duplicate = next(r for r in rejects(tmp_path) if r["reason"] == "duplicate")
    kept = read_records(tmp_path / "data/seed/seed.jsonl")
    assert duplicate["duplicate_of"] == {"line": 2, "id": kept[1].id} and duplicate["row"] == GOOD[1]
    assert all(r["source"] == "data/raw/seeds.jsonl" for r in rejects(tmp_path))
    assert [r.instruction for r in kept] == [g["instruction"] for g in GOOD[:3]]
    metrics = json.loads((tmp_path / "metrics/seed.json").read_text())
    assert metrics == {"records_in": 10, "records_out": 3, "rejected": 6, "duplicates": 1}
    report = json.loads((tmp_path / "reports/seed.json").read_text())
    assert report["rejected"]["by_reason"] == {"not_a_string": 2, "empty": 1, "missing": 1, "invalid_json": 1,
                                               "not_an_object": 1}


@pytest.mark.skipif(not CODE_ALPACA.exists(), reason="shared Code Alpaca sample absent")
def test_code_alpaca_goes_through_with_its_two_empty_outputs_reported(tmp_path, monkeypatch, caplog):
    project(tmp_path, monkeypatch, "code_alpaca_2k.json", CODE_ALPACA.read_bytes())
    with caplog.at_level("INFO"):
        stage.main()
    found = rejects(tmp_path)
    assert [(r["index"], r["field"], r["reason"]) for r in found] == [(237, "output", "empty"), (1859, "output", "empty")]
    # The line each record starts on in the file, so it can be opened in an editor.
    lines = CODE_ALPACA.read_text().splitlines()
    assert all(lines[r["line"] - 1].strip() == "{" and r["row"]["instruction"] in lines[r["line"]] for r in found)
    metrics = json.loads((tmp_path / "metrics/seed.json").read_text())
    assert metrics["records_in"] == 2017 and metrics["records_out"] == len(read_records(tmp_path / "data/seed/seed.jsonl"))
    assert metrics["rejected"] == 2 and metrics["records_out"] + metrics["duplicates"] == 2015
    assert "rejected 2 (output empty 2)" in caplog.text


def test_on_invalid_error_stops_at_the_first_bad_record_naming_file_line_and_field(tmp_path, monkeypatch, capsys):
    project(tmp_path, monkeypatch, "seeds.jsonl", jsonl(*GOOD[:2], {"instruction": "x", "output": ""}, {"output": "y"}),
            on_invalid="error")
    line = fails_with_one_line(capsys)
    assert line.startswith("seed: error: data/raw/seeds.jsonl:3: field 'output': empty")
    assert not (tmp_path / "data/seed/seed.jsonl").exists()


def test_a_share_above_the_threshold_stops_and_points_at_the_field_mapping(tmp_path, monkeypatch, capsys):
    rows = GOOD[:10] + [{"instruction": f"Question {i}?", "output": ""} for i in range(2)]
    project(tmp_path, monkeypatch, "seeds.jsonl", jsonl(*rows), max_invalid_share=0.1)
    line = fails_with_one_line(capsys)
    assert "2 of 12 records (16.7%) are invalid (output empty 2), more than seed.max_invalid_share 0.1" in line
    assert "seed.instruction_field, seed.input_field and seed.output_field" in line
    assert len(rejects(tmp_path)) == 2  # the evidence is written even though the stage stops
    assert not (tmp_path / "data/seed/seed.jsonl").exists()


def test_the_same_share_under_the_threshold_goes_through(tmp_path, monkeypatch):
    rows = GOOD[:10] + [{"instruction": f"Question {i}?", "output": ""} for i in range(2)]
    project(tmp_path, monkeypatch, "seeds.jsonl", jsonl(*rows), max_invalid_share=0.2)
    stage.main()
    assert len(read_records(tmp_path / "data/seed/seed.jsonl")) == 10


def test_a_field_mapping_that_matches_no_record_lists_the_fields_there_are(tmp_path, monkeypatch, capsys):
    project(tmp_path, monkeypatch, "seeds.json", json.dumps(GOOD), instruction_field="prompt")
    line = fails_with_one_line(capsys)
    assert "seed.instruction_field 'prompt' is in no record; the records have fields: instruction, input, output" in line


def test_a_utf8_byte_order_mark_is_accepted(tmp_path, monkeypatch):
    project(tmp_path, monkeypatch, "seeds.jsonl", b"\xef\xbb\xbf" + jsonl(*GOOD[:2]).encode())
    stage.main()
    assert [r.instruction for r in read_records(tmp_path / "data/seed/seed.jsonl")] == [GOOD[0]["instruction"],
                                                                                        GOOD[1]["instruction"]]


@pytest.mark.parametrize("name, content, expected", [
    ("seeds.jsonl", jsonl(*GOOD[:2]).encode() + '{"instruction": "café", "output": "x"}\n'.encode("latin-1"),
     "data/raw/seeds.jsonl:3: not UTF-8 (byte 0xe9 at byte offset"),
    ("seeds.json", json.dumps(GOOD).encode("utf-16"), "data/raw/seeds.json: UTF-16 text"),
    ("seeds.jsonl", json.dumps(GOOD, indent=2).encode(), "data/raw/seeds.jsonl: holds a JSON array, not JSON Lines"),
    ("seeds.json", jsonl(*GOOD).encode(), "data/raw/seeds.json: holds JSON Lines (one value per line), not a JSON array"),
    ("seeds.json", b'[{"instruction": "a", "output": "b"},\n {"instruction": }]', "data/raw/seeds.json:2: invalid JSON"),
    ("seeds.json", b'{"data": []}', "data/raw/seeds.json: expected a JSON array of records, got an object with keys data"),
])
def test_a_file_that_cannot_be_read_is_one_clear_line(tmp_path, monkeypatch, capsys, name, content, expected):
    project(tmp_path, monkeypatch, name, content)
    assert fails_with_one_line(capsys).startswith(f"seed: error: {expected}")


def test_the_byte_offset_of_a_non_utf8_byte_is_right(tmp_path, monkeypatch, capsys):
    data = b"\xef\xbb\xbf" + jsonl(GOOD[0]).encode() + b'{"instruction": "caf\xe9", "output": "x"}\n'
    project(tmp_path, monkeypatch, "seeds.jsonl", data)
    offset = data.index(b"\xe9")
    line = fails_with_one_line(capsys)
    assert f"seeds.jsonl:2: not UTF-8 (byte 0xe9 at byte offset {offset})" in line


def test_a_missing_local_source_names_the_param(tmp_path, monkeypatch, capsys):
    project(tmp_path, monkeypatch, "seeds.jsonl", jsonl(*GOOD[:2]))
    (tmp_path / "params.yaml").write_text("seed:\n  source: data/raw/nope.jsonl\n")
    assert fails_with_one_line(capsys) == ("seed: error: params.yaml: seed.source: data/raw/nope.jsonl: no such file "
                                           "(hint: give a local .json/.jsonl/.parquet file (under data/raw/) or hf:<dataset id>)")


def test_a_source_of_another_format_names_the_param(tmp_path, monkeypatch, capsys):
    project(tmp_path, monkeypatch, "seeds.csv", "instruction,output\na,b\n")
    assert "params.yaml: seed.source: data/raw/seeds.csv: expected a .json, .jsonl or .parquet file" in \
        fails_with_one_line(capsys)


@pytest.mark.parametrize("params, message", [
    ({"on_invalid": "drop"}, "params.yaml: seed.on_invalid: \"drop\" should be 'skip' or 'error'"),
    ({"max_invalid_share": 1.5}, "params.yaml: seed.max_invalid_share: 1.5 should be less than or equal to 1"),
])
def test_bad_seed_params_are_one_line(tmp_path, monkeypatch, capsys, params, message):
    project(tmp_path, monkeypatch, "seeds.jsonl", jsonl(*GOOD[:2]), **params)
    assert message in fails_with_one_line(capsys)


def test_parquet_rows_are_reported_by_index(tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = GOOD[:3] + [{"instruction": "Empty?", "input": "", "output": ""}]
    project(tmp_path, monkeypatch, "seeds.parquet", b"", max_invalid_share=0.5)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "data/raw/seeds.parquet")
    stage.main()
    assert [(r["index"], r["field"], r["reason"]) for r in rejects(tmp_path)] == [(3, "output", "empty")]
    assert "line" not in rejects(tmp_path)[0]


def test_hub_source_offline_is_one_line_without_retries(tmp_path):
    """HF_HUB_OFFLINE is read when `datasets` is imported, so this runs the stage in its own process,
    with an empty hub cache."""
    (tmp_path / "params.yaml").write_text("seed:\n  source: hf:nobody/no-such-seed-set\n")
    code, err = finish_stage("seed", tmp_path, timeout=120, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    assert code == 1
    assert err.strip().splitlines() == [
        "seed: error: seed.source: hub data set nobody/no-such-seed-set is not in the local cache, and HF_HUB_OFFLINE=1 "
        "forbids downloading it (hint: load it once while online, or set seed.source to a local file under data/raw/)"]


def test_records_over_max_chars_go_to_rejects_with_their_length(tmp_path, monkeypatch):
    """A 300,000-character output would be cut short in SFT without a word: it is a reject instead
    (default limit 20,000; the instruction with its input counts as one field)."""
    huge = {"instruction": "Write a parser.", "input": "", "output": "x = 1\n" * 50_000}
    long_input = {"instruction": "Sort this:", "input": "9 " * 10_000, "output": "sorted(data)"}
    project(tmp_path, monkeypatch, "seeds.jsonl", jsonl(*GOOD, huge, long_input))
    stage.main()
    too_long = [r for r in rejects(tmp_path) if r["reason"] == "too_long"]
    assert [(r["line"], r["field"], r["chars"]) for r in too_long] == [(21, "output", 299_999),
                                                                       (22, "instruction", 20_010)]
    assert "more than seed.max_chars 20,000" in too_long[0]["detail"]
    assert len(read_records(tmp_path / "data/seed/seed.jsonl")) == 20
    report = json.loads((tmp_path / "reports/seed.json").read_text())
    assert report["rejected"]["by_reason"] == {"too_long": 2}


def test_max_chars_zero_keeps_every_length(tmp_path, monkeypatch):
    project(tmp_path, monkeypatch, "seeds.jsonl", jsonl(*GOOD[:2], {"instruction": "i", "output": "y" * 30_000}),
            max_chars=0)
    stage.main()
    assert len(read_records(tmp_path / "data/seed/seed.jsonl")) == 3


@pytest.mark.parametrize("line, expected", [
    ('{"instruction": "tab\there", "output": "x"}', "invalid JSON: Invalid control character at column 21"),
    ('{"instruction": "open', "invalid JSON: Unterminated string starting at column 17"),
])
def test_invalid_json_messages_say_at_once(tmp_path, monkeypatch, line, expected):
    project(tmp_path, monkeypatch, "seeds.jsonl", jsonl(*GOOD, line))
    stage.main()
    assert [r["detail"] for r in rejects(tmp_path) if r["reason"] == "invalid_json"] == [expected]
