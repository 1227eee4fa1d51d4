"""Stage `seed`: load the seed instructions (a local JSON/JSONL/Parquet file or `hf:<dataset id>`),
append a non-empty `input` to its instruction, and write data/seed/seed.jsonl.

Real data sets always hold a few bad rows (Code Alpaca has records with an empty `output`). With
`seed.on_invalid: skip` each bad record, and each duplicate, goes to data/seed/rejects.jsonl with
where it came from (file and line, or index), the field and the reason, and the stage goes on;
more than `seed.max_invalid_share` bad records still stops it, because that is nearly always a
wrong field mapping. With `seed.on_invalid: error` the first bad record stops it. Problems with
the file as a whole (not UTF-8, a JSON array in a .jsonl file, a field mapping that matches no
record) stop the stage with one line either way.

Params: the `seed` group. Outputs: data/seed/seed.jsonl, data/seed/rejects.jsonl,
metrics/seed.json (headline counts), reports/seed.json (counts by reason and field).
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evolinstruct.core import paths
from evolinstruct.core.atomic import atomic_open, write_json
from evolinstruct.core.errors import EvolError, ParamsError
from evolinstruct.core.params import SeedParams, read_group
from evolinstruct.core.records import Record, seed_record, write_records
from evolinstruct.core.stage import run_stage
from evolinstruct.llm.hf import load_hub_dataset

log = logging.getLogger(__name__)
REJECTS = paths.SEED_REJECTS
REPORT = paths.REPORTS / "seed.json"
MAPPING_PARAMS = "seed.instruction_field, seed.input_field and seed.output_field"


@dataclass(frozen=True)
class Row:
    """One row of the source, with where it is: `line` (JSON Lines, and the line a JSON array's
    element starts on) and/or `index` (position in a JSON array, Parquet table or hub split, from 0).
    `problem` is set when the line could not even be decoded."""

    value: Any
    line: int | None = None
    index: int | None = None
    problem: str | None = None

    def where(self) -> dict[str, int]:
        return {k: v for k, v in (("line", self.line), ("index", self.index)) if v is not None}


@dataclass(frozen=True)
class Reject:
    """A row that does not become a seed, and why (reason: invalid_json, not_an_object, missing,
    not_a_string, empty, duplicate)."""

    row: Row
    field: str | None
    reason: str
    detail: str
    duplicate_of: dict[str, Any] | None = None


def place(source: str, row: Row) -> str:
    """`file:line`, `file:line (index i)` or `source index i`, for one-line messages."""
    if row.line is not None:
        return f"{source}:{row.line}" + (f" (index {row.index})" if row.index is not None else "")
    return f"{source} index {row.index}"


# --- reading --------------------------------------------------------------------------------------

def read_text(path: Path) -> str:
    """The file as text. A UTF-8 byte-order mark is accepted; anything else that is not UTF-8 is
    one line naming the line and byte offset of the first bad byte."""
    data = path.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise EvolError(f"{path}: UTF-16 text (byte-order mark at offset 0), not UTF-8", "re-save the file as UTF-8")
    try:
        return data.decode("utf-8").removeprefix("\ufeff")  # offsets below count the BOM's bytes too
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise EvolError(f"{path}:{line}: not UTF-8 (byte 0x{data[exc.start]:02x} at byte offset {exc.start})",
                        "re-save the file as UTF-8, e.g. iconv -f latin1 -t utf-8") from None


def jsonl_rows(path: Path, text: str) -> Iterator[Row]:
    """One row per non-blank line; a line that is not JSON is a row with a problem (skippable)."""
    lines = text.splitlines()
    first = next((line.lstrip() for line in lines if line.strip()), "")
    if first.startswith("["):
        raise EvolError(f"{path}: holds a JSON array, not JSON Lines (one object per line)",
                        "rename it to .json, or write one record per line")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield Row(json.loads(line), line=number)
        except json.JSONDecodeError as exc:
            yield Row(line, line=number, problem=f"invalid JSON: {exc.msg} at column {exc.colno}")


_SPACE = re.compile(r"[ \t\r\n]*")  # JSON's whitespace


def _skip_space(text: str, at: int) -> int:
    return _SPACE.match(text, at).end()  # type: ignore[union-attr]  # always matches (maybe empty)


def json_rows(path: Path, text: str) -> list[Row]:
    """The elements of a JSON array, each with its index and the line it starts on (so a bad
    record can be found in an editor). The array is decoded element by element with the standard
    decoder; a syntax error anywhere stops, since nothing after it could be trusted."""
    decoder = json.JSONDecoder()

    def decode(at: int) -> tuple[Any, int]:
        try:
            return decoder.raw_decode(text, at)
        except json.JSONDecodeError as exc:
            raise EvolError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg} at column {exc.colno}") from None

    pos = _skip_space(text, 0)
    if not text.startswith("[", pos):
        value, end = decode(pos)
        if _skip_space(text, end) < len(text):
            raise EvolError(f"{path}: holds JSON Lines (one value per line), not a JSON array", "rename it to .jsonl")
        kind = f"an object with keys {', '.join(list(value)[:8])}" if isinstance(value, dict) else type(value).__name__
        raise EvolError(f"{path}: expected a JSON array of records, got {kind}")
    rows: list[Row] = []
    pos, line, counted = pos + 1, 1, 0
    while True:
        pos = _skip_space(text, pos)
        if text.startswith("]", pos) and not rows:
            break
        value, end = decode(pos)
        line += text.count("\n", counted, pos)
        counted = pos
        rows.append(Row(value, line=line, index=len(rows)))
        pos = _skip_space(text, end)
        if text.startswith(",", pos):
            pos += 1
        elif text.startswith("]", pos):
            break
        else:
            raise EvolError(f"{path}:{line + text.count(chr(10), counted, pos)}: invalid JSON: expected ',' or ']'")
    if _skip_space(text, pos + 1) < len(text):
        raise EvolError(f"{path}: unexpected text after the JSON array")
    return rows


def load_rows(params: SeedParams) -> tuple[str, list[Row]]:
    """Return (source name for messages, raw rows with their places)."""
    source = params.source
    if source.startswith("hf:"):
        values = load_hub_dataset("seed.source", source[3:], params.split, revision=params.revision,
                                  hint="set seed.source to a local file under data/raw/")
        return source, [Row(value, index=i) for i, value in enumerate(values)]
    path = Path(source).expanduser()
    if not path.exists():
        raise ParamsError("params.yaml", "seed.source", f"{source}: no such file",
                          "give a local .json/.jsonl/.parquet file (under data/raw/) or hf:<dataset id>")
    if path.is_dir():
        raise ParamsError("params.yaml", "seed.source", f"{source}: is a folder", "give one .json/.jsonl/.parquet file")
    suffix = path.suffix.lower()
    if suffix not in (".json", ".jsonl", ".parquet"):
        raise ParamsError("params.yaml", "seed.source", f"{source}: expected a .json, .jsonl or .parquet file",
                          "convert it, or load it from the hub with hf:<dataset id>")
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return source, [Row(value, index=i) for i, value in enumerate(pq.read_table(path).to_pylist())]
    text = read_text(path)
    if suffix == ".jsonl":
        return source, list(jsonl_rows(path, text))
    return source, json_rows(path, text)


# --- checking -------------------------------------------------------------------------------------

def check_mapping(rows: list[Row], params: SeedParams, source: str) -> None:
    """A mapped field that no record has is a wrong mapping, not a thousand bad records: one line
    listing the fields the source does have."""
    objects = [row.value for row in rows if row.problem is None and isinstance(row.value, dict)]
    if not objects:
        return
    present: Counter[str] = Counter(key for value in objects for key in value)
    for param in ("instruction_field", "output_field"):
        name = getattr(params, param)
        if name not in present:
            have = ", ".join(key for key, _ in present.most_common(20))
            raise EvolError(f"{source}: seed.{param} '{name}' is in no record; the records have fields: {have}",
                            f"set {MAPPING_PARAMS} to the source's field names")
    if params.input_field and params.input_field not in present:
        log.warning("seed.input_field '%s' is in no record of %s: no input is appended to any instruction",
                    params.input_field, source)


def to_record(row: Row, params: SeedParams, source: str) -> Record | Reject:
    """The seed record of one row, or why it cannot be one."""
    if row.problem is not None:
        return Reject(row, None, "invalid_json", row.problem)
    if not isinstance(row.value, dict):
        return Reject(row, None, "not_an_object", f"expected an object, got {type(row.value).__name__}")
    fields = {}
    for key in (params.instruction_field, params.output_field):
        value = row.value.get(key)
        if key not in row.value or value is None:
            return Reject(row, key, "missing", "missing")
        if not isinstance(value, str):
            return Reject(row, key, "not_a_string", f"expected a string, got {type(value).__name__}")
        if not value.strip():
            return Reject(row, key, "empty", "empty")
        fields[key] = value.strip()
    extra = row.value.get(params.input_field) or ""
    if not isinstance(extra, str):
        return Reject(row, params.input_field, "not_a_string", f"expected a string, got {type(extra).__name__}")
    instruction = fields[params.instruction_field]
    if extra.strip():  # WizardCoder: a non-empty input is appended to the instruction with a newline
        instruction = f"{instruction}\n{extra.strip()}"
    return seed_record(instruction, fields[params.output_field], source=source)


def select(rows: list[Row], params: SeedParams, source: str) -> tuple[list[Record], list[Reject]]:
    """Split rows into seed records (first of identical ones) and rejects, in source order. With
    `on_invalid: error` the first bad record raises."""
    records: dict[str, tuple[Record, Row]] = {}
    rejects: list[Reject] = []
    for row in rows:
        result = to_record(row, params, source)
        if isinstance(result, Reject):
            if params.on_invalid == "error":
                field = f"field '{result.field}'" if result.field else "record"
                raise EvolError(f"{place(source, row)}: {field}: {result.detail}",
                                "fix the record, or set seed.on_invalid: skip to report bad records in "
                                f"{REJECTS} and go on")
            rejects.append(result)
        elif result.id in records:
            first = records[result.id][1]
            rejects.append(Reject(row, None, "duplicate", f"same instruction and output as {place(source, first)}",
                                  {"id": result.id, **first.where()}))
        else:
            records[result.id] = (result, row)
    return [record for record, _ in records.values()], rejects


def reject_json(reject: Reject, source: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"source": source, **reject.row.where(), "field": reject.field,
                             "reason": reject.reason, "detail": reject.detail}
    if reject.duplicate_of:
        entry["duplicate_of"] = reject.duplicate_of
    entry["row"] = reject.row.value
    return entry


def write_rejects(rejects: list[Reject], source: str) -> None:
    with atomic_open(REJECTS) as handle:
        for reject in rejects:
            handle.write(json.dumps(reject_json(reject, source), ensure_ascii=False, sort_keys=True, default=str))
            handle.write("\n")


def summary(rejects: list[Reject]) -> str:
    """`output empty 2, instruction missing 1`: bad records by field and reason, most first."""
    counts = Counter(f"{r.field} {r.reason}" if r.field else r.reason for r in rejects)
    return ", ".join(f"{what} {n}" for what, n in counts.most_common())


def main() -> None:
    params = read_group(SeedParams, "seed")
    source, rows = load_rows(params)
    if params.limit:
        rows = rows[: params.limit]
    if not rows:
        raise EvolError(f"seed.source {source}: no records")
    check_mapping(rows, params, source)
    records, rejects = select(rows, params, source)
    write_rejects(rejects, source)
    invalid = [r for r in rejects if r.reason != "duplicate"]
    duplicates = len(rejects) - len(invalid)
    share = len(invalid) / len(rows)
    if share > params.max_invalid_share:
        raise EvolError(
            f"{source}: {len(invalid)} of {len(rows)} records ({share:.1%}) are invalid ({summary(invalid)}), "
            f"more than seed.max_invalid_share {params.max_invalid_share:g}; they are listed in {REJECTS}",
            f"this usually means a wrong field mapping: check {MAPPING_PARAMS} against the source's fields, "
            "or raise seed.max_invalid_share",
        )
    if not records:
        raise EvolError(f"{source}: no valid records ({summary(invalid)}); they are listed in {REJECTS}")
    write_records(paths.SEED, records)
    write_json(paths.METRICS / "seed.json", {"records_in": len(rows), "records_out": len(records),
                                             "rejected": len(invalid), "duplicates": duplicates})
    write_json(REPORT, {
        "source": source, "records_in": len(rows), "records_out": len(records), "rejects_file": str(REJECTS),
        "rejected": {"total": len(invalid), "by_reason": dict(Counter(r.reason for r in invalid).most_common()),
                     "by_field": dict(Counter(r.field for r in invalid if r.field).most_common())},
        "duplicates": duplicates,
    })
    log.info("%d records read from %s: %d written to %s; rejected %d%s; duplicates dropped %d%s",
             len(rows), source, len(records), paths.SEED, len(invalid),
             f" ({summary(invalid)})" if invalid else "", duplicates,
             f"; see {REJECTS}" if rejects else "")


if __name__ == "__main__":
    run_stage("seed", main)
