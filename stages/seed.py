"""Stage `seed`: load the seed instructions (a local JSON/JSONL/Parquet file or `hf:<dataset id>`),
append a non-empty `input` to its instruction, and write data/seed/seed.jsonl.

Params: the `seed` group.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evolinstruct.core import paths
from evolinstruct.core.atomic import write_json
from evolinstruct.core.errors import EvolError, RecordError
from evolinstruct.core.params import read_group
from evolinstruct.core.records import Record, seed_record, write_records
from evolinstruct.core.stage import run_stage

log = logging.getLogger(__name__)


@dataclass
class SeedParams:
    #: A local .json/.jsonl/.parquet path (keep it under data/raw/ so DVC tracks its hash), or
    #: `hf:<dataset id>` to load from the Hugging Face hub.
    source: str = "hf:sahil280114/codealpaca"
    split: str = "train"
    #: Hub revision (a commit sha) for `hf:` sources; empty = the default branch.
    revision: str = ""
    #: Keep the first N records; 0 = all.
    limit: int = 0
    instruction_field: str = "instruction"
    input_field: str = "input"
    output_field: str = "output"


def load_rows(params: SeedParams) -> tuple[str, list[Any]]:
    """Return (source name for error messages, raw rows)."""
    source = params.source
    if source.startswith("hf:"):
        dataset_id = source[3:]
        import datasets

        try:
            rows = datasets.load_dataset(dataset_id, split=params.split, revision=params.revision or None)
        except Exception as exc:
            raise EvolError(
                f"seed.source {source}: could not load from the Hugging Face hub: {type(exc).__name__}: {exc}",
                "check the dataset id and your network, or set seed.source to a local file under data/raw/",
            ) from None
        return source, list(rows)
    path = Path(source)
    if not path.exists():
        raise EvolError(f"seed.source {source}: file not found", "use a local path or hf:<dataset id>")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return source, pq.read_table(path).to_pylist()
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise RecordError(source, number, "<json>", f"invalid JSON: {exc.msg}") from None
        return source, rows
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecordError(source, exc.lineno, "<json>", f"invalid JSON: {exc.msg}") from None
    if not isinstance(data, list):
        raise RecordError(source, 1, "<json>", "expected a JSON array of records")
    return source, data


def to_record(row: Any, params: SeedParams, source: str, number: int) -> Record:
    if not isinstance(row, dict):
        raise RecordError(source, number, "<record>", "expected an object")
    fields = {}
    for key in (params.instruction_field, params.output_field):
        value = row.get(key)
        if not isinstance(value, str) or not value.strip():
            raise RecordError(source, number, key, "missing or not a non-empty string")
        fields[key] = value.strip()
    extra = row.get(params.input_field) or ""
    if not isinstance(extra, str):
        raise RecordError(source, number, params.input_field, "expected a string")
    instruction = fields[params.instruction_field]
    if extra.strip():  # WizardCoder: a non-empty input is appended to the instruction with a newline
        instruction = f"{instruction}\n{extra.strip()}"
    return seed_record(instruction, fields[params.output_field], source=source)


def main() -> None:
    params = read_group(SeedParams, "seed")
    source, rows = load_rows(params)
    if params.limit:
        rows = rows[: params.limit]
    records: dict[str, Record] = {}
    for number, row in enumerate(rows, start=1):
        record = to_record(row, params, source, number)
        records.setdefault(record.id, record)  # identical seeds would share an id: keep the first
    if not records:
        raise EvolError(f"seed.source {source}: no records")
    write_records(paths.SEED, records.values())
    write_json(paths.METRICS / "seed.json", {"records": len(records), "duplicates_dropped": len(rows) - len(records)})
    log.info("wrote %d seed records to %s", len(records), paths.SEED)


if __name__ == "__main__":
    run_stage("seed", main)
