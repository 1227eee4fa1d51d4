"""User-facing errors: one line saying what is wrong and where, plus a hint saying what to do."""

from __future__ import annotations

import json
from collections.abc import Sequence


def invalid_json(exc: json.JSONDecodeError) -> str:
    """`invalid JSON: Expecting value at column 3`. Some of json's messages end in "at" already
    ("Invalid control character at", "Unterminated string starting at"): not "at at"."""
    return f"invalid JSON: {exc.msg.removesuffix(' at')} at column {exc.colno}"


class EvolError(Exception):
    """An error the user can fix. The CLI and stage runners print it as one line and exit non-zero."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message

    def lines(self) -> list[str]:
        """The error as printed, one line per problem (most errors are one problem)."""
        return [str(self)]


class RecordError(EvolError):
    """A record in a JSONL file is malformed; names the file, line and field."""

    def __init__(self, path: str, line: int, field: str, problem: str) -> None:
        super().__init__(f"{path}:{line}: field '{field}': {problem}")
        self.path, self.line, self.field = path, line, field


class ParamsError(EvolError):
    """A params.yaml value is missing, unknown or invalid; names the file, the dotted key and the value.

    `more` carries further (key, problem) pairs found in the same file, so that every problem is
    reported at once, each on its own line.
    """

    def __init__(self, path: str, key: str, problem: str, hint: str | None = None,
                 more: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(f"{path}: {key}: {problem}", hint)
        self.path, self.key = path, key
        self.problems = [(key, problem), *more]

    def lines(self) -> list[str]:
        first = EvolError.__str__(self)
        return [first, *(f"{self.path}: {key}: {problem}" for key, problem in self.problems[1:])]

    def __str__(self) -> str:
        return "\n".join(self.lines())


class MissingSecretError(EvolError):
    """An API key is needed but absent from the environment (keys never live in params)."""


class PluginError(EvolError):
    """A plugin could not be loaded, broke its hook's contract, or raised in plugin code."""
