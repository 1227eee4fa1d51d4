"""Reading a seed source as rows with their places: a local JSON array, JSON Lines or Parquet file,
or a hub data set (`hf:<id>`). A bad line is a row with a problem (skippable); a file that cannot
be read as a whole is one line naming the file, line and byte.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evolinstruct.core.errors import EvolError, ParamsError, invalid_json
from evolinstruct.core.params import SeedParams
from evolinstruct.llm.hf import load_hub_dataset


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


def place(source: str, row: Row) -> str:
    """`file:line`, `file:line (index i)` or `source index i`, for one-line messages."""
    if row.line is not None:
        return f"{source}:{row.line}" + (f" (index {row.index})" if row.index is not None else "")
    return f"{source} index {row.index}"


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
            yield Row(line, line=number, problem=invalid_json(exc))


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
            raise EvolError(f"{path}:{exc.lineno}: {invalid_json(exc)}") from None

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
