"""Building the seed set: rows become seed records, or rejects with their place, field and reason.

Real data sets always hold a few bad rows (Code Alpaca has records with an empty `output`). With
`seed.on_invalid: skip` each bad record, each record longer than `seed.max_chars` and each
duplicate goes to data/seed/rejects.jsonl with where it came from (file and line, or index), the
field and the reason, and the stage goes on; more than `seed.max_invalid_share` bad records still
stops it, because that is nearly always a wrong field mapping. With `seed.on_invalid: error` the
first bad record stops it. Problems with the file as a whole (not UTF-8, a JSON array in a .jsonl
file, a field mapping that matches no record) stop the stage with one line either way.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

from evolinstruct.core import paths
from evolinstruct.core.atomic import atomic_open, write_json
from evolinstruct.core.errors import EvolError
from evolinstruct.core.params import SeedParams
from evolinstruct.core.records import Record, seed_record, write_records
from evolinstruct.seed.read import Row, load_rows, place

log = logging.getLogger(__name__)
REJECTS = paths.SEED_REJECTS
REPORT = paths.REPORTS / "seed.json"
MAPPING_PARAMS = "seed.instruction_field, seed.input_field and seed.output_field"


@dataclass(frozen=True)
class Reject:
    """A row that does not become a seed, and why (reason: invalid_json, not_an_object, missing,
    not_a_string, empty, too_long, duplicate)."""

    row: Row
    field: str | None
    reason: str
    detail: str
    duplicate_of: dict[str, Any] | None = None
    chars: int | None = None  # too_long: the field's length in characters



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
    # A huge record (a pasted file, a data dump) would be cut short by SFT's max_length anyway, and
    # costs tokens in every round: it is set aside, with its length, instead of passing unnoticed.
    for key, text in ((params.instruction_field, instruction), (params.output_field, fields[params.output_field])):
        if params.max_chars and len(text) > params.max_chars:
            return Reject(row, key, "too_long", f"{len(text):,} characters, more than seed.max_chars "
                                                f"{params.max_chars:,}", chars=len(text))
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
    if reject.chars is not None:
        entry["chars"] = reject.chars
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


def build_seed(params: SeedParams) -> None:
    """Read the source, write data/seed/seed.jsonl, its rejects, metrics and report."""
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
    malformed = [r for r in invalid if r.reason != "too_long"]  # long records are no sign of a wrong mapping
    share = len(malformed) / len(rows)
    if share > params.max_invalid_share:
        raise EvolError(
            f"{source}: {len(malformed)} of {len(rows)} records ({share:.1%}) are invalid ({summary(malformed)}), "
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
