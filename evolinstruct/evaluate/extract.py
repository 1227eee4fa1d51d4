"""Turn a model's free-text answer into the code to test, the way the published evaluations do.

WizardCoder's post-processing (WizardCoder/src/process_humaneval.py, process_mbpp.py) takes the
```python block, and cuts from `if __name__ == "__main__":`, `# Example usage` and `# Test examples`
on. We do the same and a little more, because a correct solution followed by a failing example
call would otherwise be scored as a failure:

* a chat preamble before unfenced code ("Sure! Here is the function:") is dropped;
* trailing example or test sections (`# Example usage`, `# Example`, `# Test`, `# Tests`,
  `# Testing`, `# Driver code`, `# Usage`, at the top level) are cut;
* top-level `print(...)` calls, bare calls and `assert` statements after the solution's
  definitions are removed.

What was cut is returned with the code (`Extraction.cut`), so each sample in
`data/eval/<benchmark>.jsonl` says what its extraction removed.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)
_MAIN = re.compile(r"^if\s+__name__\s*==\s*['\"]__main__['\"]\s*:", re.MULTILINE)
_SECTION = re.compile(
    r"^#+\s*(example usage|examples?|test examples|test cases?|tests?|testing|driver code|usage|sample usage)\b.*$",
    re.MULTILINE | re.IGNORECASE,
)
_CODE_START = re.compile(r"^(def |class |import |from |@|async def )")
_PYTHON = {"", "python", "py", "python3"}


@dataclass
class Extraction:
    code: str
    #: What the extraction removed: {"kind": ..., "text": ...} in the order found.
    cut: list[dict[str, str]] = field(default_factory=list)

    def drop(self, kind: str, text: str) -> None:
        if text.strip():
            self.cut.append({"kind": kind, "text": text.strip()})


def extract(text: str, entry_point: str | None = None) -> Extraction:
    """Pick the code out of an answer and cut what the model appended after the solution.

    Fenced blocks win (the first Python block that defines `entry_point`, else the first Python or
    untagged block); otherwise the whole answer is code (a function-body completion, or a whole
    function after a chat preamble).
    """
    text = text.replace("\r\n", "\n")
    result = Extraction(text)
    blocks = [(m, m.group(1).lower(), m.group(2)) for m in _FENCE.finditer(text)]
    python = [(m, body) for m, lang, body in blocks if lang in _PYTHON]
    if python:
        defining = [(m, b) for m, b in python if entry_point and _defines_anywhere(b, entry_point)]
        match, body = (defining or python)[0]
        result.drop("prose", text[: match.start()])
        result.drop("after_code", text[match.end():])
        result.code = body
    else:
        _drop_preamble(result)
    for pattern, kind in ((_MAIN, "main_block"), (_SECTION, "example_section")):
        match = pattern.search(result.code)
        if match:
            result.drop(kind, result.code[match.start():])
            result.code = result.code[: match.start()]
    _drop_top_level_calls(result, entry_point)
    result.code = result.code.rstrip() + "\n"
    return result


def extract_code(text: str, entry_point: str | None = None) -> str:
    """The code of `extract`, without the record of what was cut."""
    return extract(text, entry_point).code


def _defines_anywhere(code: str, entry_point: str) -> bool:
    return re.search(rf"\bdef\s+{re.escape(entry_point)}\s*\(", code) is not None


def _drop_preamble(result: Extraction) -> None:
    """Unfenced code after a line of chat ("Here is the function:"): drop the chat. A
    function-body completion (indented) or an answer that is code from its first line is kept."""
    lines = result.code.split("\n")
    if not lines or not lines[0].strip() or lines[0][:1].isspace() or _CODE_START.match(lines[0]):
        return
    for i, line in enumerate(lines):
        if _CODE_START.match(line):
            head = "\n".join(lines[:i])
            if _is_prose(head):
                result.drop("prose", head)
                result.code = "\n".join(lines[i:])
            return


def _is_prose(text: str) -> bool:
    try:
        ast.parse(text)
    except (SyntaxError, ValueError):  # ValueError: a NUL byte, which sampled model output can hold
        return True
    return False


def _drop_top_level_calls(result: Extraction, entry_point: str | None) -> None:
    """Remove top-level `print(...)`, bare calls and asserts that follow the solution's definitions."""
    code = result.code
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):  # a function-body completion, or broken code (even a NUL byte):
        # only whole print/assert lines
        kept = []
        for line in code.split("\n"):
            if re.match(r"^(print\s*\(|assert\s)", line):
                result.drop("print" if line.startswith("print") else "assert", line)
            else:
                kept.append(line)
        result.code = "\n".join(kept)
        return
    definitions = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    if not definitions:
        return
    after = max(n.end_lineno or n.lineno for n in definitions)
    lines = code.split("\n")
    drop: list[tuple[int, int, str]] = []
    for node in tree.body:
        if node.lineno <= after:
            continue
        if isinstance(node, ast.Assert):
            drop.append((node.lineno, node.end_lineno or node.lineno, "assert"))
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            func = node.value.func
            kind = "print" if isinstance(func, ast.Name) and func.id == "print" else "call"
            drop.append((node.lineno, node.end_lineno or node.lineno, kind))
    for start, end, kind in drop:
        result.drop(kind, "\n".join(lines[start - 1 : end]))
    for start, end, _ in reversed(drop):
        del lines[start - 1 : end]
    result.code = "\n".join(lines)


def defines(code: str, entry_point: str) -> bool:
    """Whether `code` defines the function `entry_point` itself (a `def` line for it): a benchmark's
    ``program`` then need not repeat the problem's prompt before the model's code."""
    return re.search(rf"^\s*def\s+{re.escape(entry_point)}\s*\(", code, re.MULTILINE) is not None
