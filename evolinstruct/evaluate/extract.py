"""Turn a model's free-text answer into the code to test."""

from __future__ import annotations

import re

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)
_MAIN = re.compile(r"^if\s+__name__\s*==\s*['\"]__main__['\"]\s*:", re.MULTILINE)


def extract_code(text: str, entry_point: str | None = None) -> str:
    """Pick the code out of an answer.

    Fenced blocks win (the first Python block that defines `entry_point`, else the first Python or
    untagged block); otherwise the whole answer is code (a function-body completion). Anything from
    an ``if __name__ == "__main__":`` line on is cut, so a demo run cannot replace the tests.
    """
    blocks = [(lang.lower(), body) for lang, body in _FENCE.findall(text)]
    code = text
    python = [body for lang, body in blocks if lang in {"", "python", "py", "python3"}]
    if python:
        defining = [b for b in python if entry_point and re.search(rf"\bdef\s+{re.escape(entry_point)}\s*\(", b)]
        code = (defining or python)[0]
    match = _MAIN.search(code)
    if match:
        code = code[: match.start()]
    return code.rstrip() + "\n"


def defines(code: str, entry_point: str) -> bool:
    return re.search(rf"^\s*def\s+{re.escape(entry_point)}\s*\(", code, re.MULTILINE) is not None
