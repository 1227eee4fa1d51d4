"""docs/params.md, generated from the params schema, so the table of params cannot drift from the
code: `evol params --markdown > docs/params.md` writes it, and a test fails when it is stale."""

from __future__ import annotations

import json
import types
import typing
from typing import Annotated, Any, Literal

import annotated_types as at
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from evolinstruct.core.params import GROUPS, Params

HEADER = """\
# Params

Every key of `params.yaml`, with its type, default, allowed values and meaning. This file is
generated from the schema in `evolinstruct/core/params.py`; after changing the schema, regenerate it with

```sh
evol params --markdown > docs/params.md
```

(a test fails while it is out of date). `evol params` checks `params.yaml` against the same schema
and prints every problem, one line each; every stage, `evol demo --set` and `evol estimate` run the
same check before doing any work.

How values are read:

- Floats may be written as users and `dvc exp run -S` write them: `2e-5`, `3e-05`, `1e-4` and
  `2.0e-5` are all numbers (YAML 1.2's rule). An integer is accepted where a float is expected.
- Nothing else is converted: `true` is not an integer, `"16"` is not a number, `16` is not a string
  (quote a revision made only of digits).
- An unknown key is an error at every level, with the closest known key suggested. A group left out,
  or written with nothing under it, takes its defaults.
"""


def _type_name(ann: Any) -> str:
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is Annotated:
        return _type_name(args[0])
    if origin is Literal:
        return type(args[0]).__name__
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if origin is list:
        return f"list of {_type_name(args[0])}"
    if origin is dict:
        return f"mapping of {_type_name(args[0])} to {_type_name(args[1])}"
    if ann is type(None):
        return "null"
    if ann is Any:
        return "any"
    return getattr(ann, "__name__", str(ann))


def _bounds(metadata: list[Any]) -> str:
    found = {type(m): m for m in metadata}
    ge, gt, le, lt = found.get(at.Ge), found.get(at.Gt), found.get(at.Le), found.get(at.Lt)
    low = f">= {ge.ge}" if ge else f"> {gt.gt}" if gt else ""
    high = f"<= {le.le}" if le else f"< {lt.lt}" if lt else ""
    return ", ".join(b for b in (low, high) if b)


def _allowed(ann: Any, metadata: list[Any], each: str = "") -> str:
    """Choices and bounds found in the annotation, `each` naming items of a list or mapping."""
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    parts = [f"{each}{b}" for b in [_bounds(metadata)] if b]
    if origin is Annotated:
        inner = [m for a in args[1:] for m in (a.metadata if isinstance(a, FieldInfo) else [a])]
        parts.append(_allowed(args[0], inner, each))
    elif origin is Literal:
        parts.append(f"{each}one of " + ", ".join(f"`{a}`" for a in args))
    elif origin in (typing.Union, types.UnionType):
        parts += [_allowed(a, [], each) for a in args]
    elif origin is list:
        parts.append(_allowed(args[0], [], "each "))
    elif origin is dict:
        keys = _allowed(args[0], [], "")
        parts += [f"keys {keys.removeprefix('one of ')}" if keys else "", _allowed(args[1], [], "each value ")]
    return "; ".join(p for p in parts if p)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _rows(model: type[BaseModel], prefix: str) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            continue
        default = json.dumps(field.get_default(call_default_factory=True), ensure_ascii=False)
        rows.append(f"| `{prefix}{name}` | {_type_name(field.annotation)} | `{_cell(default)}` | "
                    f"{_cell(_allowed(field.annotation, list(field.metadata)))} | {_cell(field.description or '')} |")
    return rows


def _table(rows: list[str]) -> str:
    return "\n".join(["| key | type | default | allowed | description |", "| --- | --- | --- | --- | --- |", *rows])


def params_markdown() -> str:
    """The whole of docs/params.md."""
    sections = [HEADER, "## Top level\n", _table(_rows(Params, "")) + "\n"]
    for name, model in GROUPS.items():
        summary = " ".join((model.__doc__ or "").split())
        sections += [f"## `{name}`\n", f"{summary}\n", _table(_rows(model, f"{name}.")) + "\n"]
    return "\n".join(sections)
