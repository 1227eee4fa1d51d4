"""Read params.yaml into typed, validated config objects, one per params group.

Each stage reads only its own groups (as iterative/example-get-started does), and declares the
same groups in dvc.yaml, so that changing a value reruns exactly the stages that read it. A typo
in a key or a value of the wrong type is reported with the file and the dotted key.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from typing import Any, TypeVar, Union

import yaml

from evolinstruct.core.errors import ParamsError

T = TypeVar("T")
DEFAULT_PARAMS = "params.yaml"


def load_params(path: str | os.PathLike[str] = DEFAULT_PARAMS) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle) or {}
    except FileNotFoundError:
        raise ParamsError(str(path), "<file>", "not found", "run from the project folder, or pass --params") from None
    except yaml.YAMLError as exc:
        raise ParamsError(str(path), "<file>", f"invalid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ParamsError(str(path), "<file>", "expected a mapping at the top level")
    return data


def _check_type(value: Any, hint: Any, path: str, key: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _check_type(value, option, path, key)
            except ParamsError as exc:
                errors.append(exc)
        raise errors[0]
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ParamsError(path, key, f"expected a list, got {value!r}")
        (item,) = typing.get_args(hint)[:1] or (Any,)
        return [_check_type(v, item, path, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ParamsError(path, key, f"expected a mapping, got {value!r}")
        _, item = typing.get_args(hint) or (Any, Any)
        return {k: _check_type(v, item, path, f"{key}.{k}") for k, v in value.items()}
    expected = origin or hint
    if not isinstance(value, expected) or (isinstance(value, bool) and expected is not bool):
        raise ParamsError(path, key, f"expected {getattr(expected, '__name__', expected)}, got {value!r}")
    return value


def parse_group(cls: type[T], data: Any, key: str, path: str = DEFAULT_PARAMS) -> T:
    """Build dataclass `cls` from the mapping `data` found at `key` in `path`, validating every field."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ParamsError(path, key, f"expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ParamsError(path, f"{key}.{unknown[0]}", "unknown key", f"known keys: {', '.join(sorted(names))}")
    values = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in data:
            values[f.name] = _check_type(data[f.name], hints[f.name], path, f"{key}.{f.name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ParamsError(path, f"{key}.{f.name}", "missing")
    return cls(**values)


def read_group(cls: type[T], key: str, path: str | os.PathLike[str] = DEFAULT_PARAMS) -> T:
    """Load `path` and parse the group at `key` (top-level name) into `cls`."""
    return parse_group(cls, load_params(path).get(key), key, str(path))


def read_rounds(path: str | os.PathLike[str] = DEFAULT_PARAMS) -> int:
    """The top-level `rounds` param: how many evolution rounds to run (0 = seed data only)."""
    params = load_params(path)
    if "rounds" not in params:
        raise ParamsError(str(path), "rounds", "missing")
    rounds = params["rounds"]
    if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 0:
        raise ParamsError(str(path), "rounds", f"expected an integer >= 0, got {rounds!r}")
    return rounds


def deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """Overlay a profile on params: mappings merge key by key, anything else is replaced."""
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
