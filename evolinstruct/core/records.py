"""The one record schema shared by every stage's JSONL (documented in docs/records.md).

A record is one instruction/response pair plus its lineage: the seed it descends from, the parent
it was evolved from, the round, the heuristic and the model that wrote it, and what happened to it.
Ids are derived from content, so two runs over the same inputs produce the same ids, and DVC sees
byte-identical outputs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evolinstruct.core.atomic import atomic_open
from evolinstruct.core.errors import RecordError, invalid_json

#: Lifecycle of a record. A seed is round 0. An evolution is `kept` when every filter passed,
#: `eliminated` when a filter rejected it, `failed` when a request for it never got an answer.
STATUSES = ("seed", "kept", "eliminated", "failed")


@dataclass(frozen=True)
class Rejection:
    """Why a record was removed: the rule (a filter's name) and the evidence it found."""

    rule: str
    evidence: str = ""


@dataclass(frozen=True)
class Record:
    """One instruction/response pair and its lineage, as every stage's JSONL holds it
    (docs/records.md). Ids are content-derived; use ``replace`` for a changed copy."""

    id: str
    instruction: str
    output: str
    round: int = 0
    status: str = "seed"
    parent_id: str | None = None
    root_id: str | None = None
    heuristic: str | None = None
    backend: str | None = None
    model: str | None = None
    source: str | None = None
    reasons: tuple[Rejection, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        # Field by field rather than dataclasses.asdict, whose deep copy dominates writing 80k records.
        data = {name: getattr(self, name) for name in _FIELD_NAMES}
        data["reasons"] = [{"rule": r.rule, "evidence": r.evidence} for r in self.reasons]
        return data

    def replace(self, **changes: Any) -> Record:
        return dataclasses.replace(self, **changes)


_FIELD_NAMES = tuple(f.name for f in dataclasses.fields(Record))


def content_id(*parts: Any) -> str:
    """A short, stable id from the given parts (sha256 of their JSON), so reruns agree on ids."""
    blob = json.dumps(parts, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def seed_record(instruction: str, output: str, source: str | None = None) -> Record:
    rid = content_id("seed", instruction, output)
    return Record(id=rid, instruction=instruction, output=output, root_id=rid, source=source)


def evolved_record(
    parent: Record,
    round: int,
    heuristic: str,
    instruction: str,
    output: str,
    backend: str,
    model: str,
    status: str,
    reasons: Iterable[Rejection] = (),
) -> Record:
    rid = content_id(parent.id, round, heuristic, instruction, output)
    return Record(
        id=rid,
        instruction=instruction,
        output=output,
        round=round,
        status=status,
        parent_id=parent.id,
        root_id=parent.root_id or parent.id,
        heuristic=heuristic,
        backend=backend,
        model=model,
        source=parent.source,
        reasons=tuple(reasons),
    )


# --- validation -------------------------------------------------------------------------------

_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "id": (str,),
    "instruction": (str,),
    "output": (str,),
    "round": (int,),
    "status": (str,),
    "parent_id": (str, type(None)),
    "root_id": (str, type(None)),
    "heuristic": (str, type(None)),
    "backend": (str, type(None)),
    "model": (str, type(None)),
    "source": (str, type(None)),
    "reasons": (list,),
}
_REQUIRED = ("id", "instruction", "output")


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def record_from_json(data: Any, path: str, line: int) -> Record:
    """Validate one decoded JSON object and build a Record, or raise RecordError naming the field."""
    if not isinstance(data, dict):
        raise RecordError(path, line, "<record>", f"expected a JSON object, got {_type_name(data)}")
    for name in _REQUIRED:
        if name not in data:
            raise RecordError(path, line, name, "missing")
    unknown = sorted(set(data) - set(_FIELD_TYPES))
    if unknown:
        raise RecordError(path, line, unknown[0], "unknown field (see docs/records.md for the schema)")
    for name, value in data.items():
        allowed = _FIELD_TYPES[name]
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            expected = " or ".join("null" if t is type(None) else t.__name__ for t in allowed)
            raise RecordError(path, line, name, f"expected {expected}, got {_type_name(value)}")
    if data.get("status", "seed") not in STATUSES:
        raise RecordError(path, line, "status", f"expected one of {', '.join(STATUSES)}, got {data['status']!r}")
    if data.get("round", 0) < 0:
        raise RecordError(path, line, "round", f"must be >= 0, got {data['round']}")
    reasons = []
    for i, reason in enumerate(data.get("reasons", [])):
        if not isinstance(reason, dict) or not isinstance(reason.get("rule"), str):
            raise RecordError(path, line, f"reasons[{i}].rule", "expected an object with a string 'rule'")
        reasons.append(Rejection(rule=reason["rule"], evidence=str(reason.get("evidence", ""))))
    return Record(**{**data, "reasons": tuple(reasons)})


def iter_json_lines(path: str | os.PathLike[str]) -> Iterator[tuple[int, Any]]:
    """Yield (line number, decoded value) for each non-blank line of a JSONL file; a missing file
    or a line that is not JSON raises RecordError naming the file and line."""
    name = str(path)
    try:
        handle = open(path, encoding="utf-8")
    except OSError as exc:
        raise RecordError(name, 0, "<file>", exc.strerror or "cannot open") from None
    with handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                yield number, json.loads(text)
            except json.JSONDecodeError as exc:
                raise RecordError(name, number, "<json>", invalid_json(exc)) from None


def iter_records(path: str | os.PathLike[str]) -> Iterator[Record]:
    """Yield validated records from a JSONL file; the first bad line raises RecordError."""
    for number, data in iter_json_lines(path):
        yield record_from_json(data, str(path), number)


def read_records(path: str | os.PathLike[str]) -> list[Record]:
    return list(iter_records(path))


def write_records(path: str | os.PathLike[str], records: Iterable[Record]) -> int:
    """Write records as JSONL atomically (temp file, then rename). Returns how many were written."""
    count = 0
    with atomic_open(path) as handle:
        for record in records:
            handle.write(json.dumps(record.to_json(), ensure_ascii=False, sort_keys=True))
            handle.write("\n")
            count += 1
    return count


def round_path(folder: str | os.PathLike[str], k: int) -> Path:
    """The file that holds every attempt of round k: `<folder>/round_<k>.jsonl`."""
    return Path(folder) / f"round_{k}.jsonl"
