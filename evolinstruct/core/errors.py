"""User-facing errors: one line saying what is wrong and where, plus a hint saying what to do."""

from __future__ import annotations


class EvolError(Exception):
    """An error the user can fix. The CLI and stage runners print it as one line and exit non-zero."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message


class RecordError(EvolError):
    """A record in a JSONL file is malformed; names the file, line and field."""

    def __init__(self, path: str, line: int, field: str, problem: str) -> None:
        super().__init__(f"{path}:{line}: field '{field}': {problem}")
        self.path, self.line, self.field = path, line, field


class ParamsError(EvolError):
    """A params.yaml value is missing or has the wrong type; names the file and the dotted key."""

    def __init__(self, path: str, key: str, problem: str, hint: str | None = None) -> None:
        super().__init__(f"{path}: {key}: {problem}", hint)
        self.path, self.key = path, key


class MissingSecretError(EvolError):
    """An API key is needed but absent from the environment (keys never live in params)."""
