"""Turn a model's raw answer into the code that runs, in one of three named modes (`evaluate.postprocess`).

* `wizardcoder` (default): exactly the rules of WizardCoder's published scripts
  (WizardCoder/src/humaneval_gen.py, mbpp_gen.py, process_humaneval.py, process_mbpp.py), nothing
  more, so scores sit next to the paper's table. The benchmark says which script's rules apply
  (`Rules`): the part of the answer upstream keeps (HumanEval: up to a second `### Response:`;
  MBPP: after the last), tabs back to four spaces (upstream writes the prompt's indents as tabs),
  the first ```` ```python ```` block, and cuts at `if __name__ == "__main__":`, `# Example usage`
  (and, for MBPP, `# Test examples`). Where upstream's script would stop with an error (the text
  holds `__name__ == "__main__"` but not `if __name__ == "__main__":`), the answer is kept as is.
* `evalplus`: what EvalPlus's sanitizer does (evalplus/sanitize.py): the longest block of the
  answer that parses, then its imports and the definitions the entry point needs (functions with a
  `return`, classes, top-level assignments; the first definition of a name wins; decorated
  definitions are dropped, as there). EvalPlus searches every span of lines (cubic time); we try
  the fenced blocks and the stretches between prose lines, a bounded number of parses, so that a
  megabyte answer costs linear time.
* `lenient`: the project's extra care. It parses statements, not lines: it drops prose around the
  code, example calls of the entry point, top-level `print`s, `assert`s, `input()` drivers and the
  `__main__` block, but never a definition and never a statement the definitions need (a top-level
  call of a helper, a table it fills, `sys.setrecursionlimit`, a constant).

Every function here runs in time linear in the answer: no regular expression that can backtrack
over model text, a bounded number of `ast.parse` calls. What was cut is returned with the code
(`Extraction.cut`), so each sample in `data/eval/<benchmark>.jsonl` says what its post-processing removed.
"""

from __future__ import annotations

import ast
import gc
from dataclasses import dataclass, field

#: The modes of `evaluate.postprocess` (and `evol eval-samples --postprocess`, which also has `none`).
MODES = ("wizardcoder", "evalplus", "lenient")
RESPONSE = "### Response:"
_PYTHON_FENCES = {"", "python", "py", "python3"}
_CODE_STARTS = ("def ", "class ", "import ", "from ", "@", "async def ")
#: Most `ast.parse` calls one answer may cost when looking for the code in it (keeps it linear).
_PARSE_BUDGET = 12


@dataclass(frozen=True)
class Rules:
    """How the published scripts read a benchmark's raw answer (see the module docstring)."""

    #: "first": upstream keeps the text up to a second `### Response:` (HumanEval, `split(...)[1]`
    #: of prompt + answer); "last": after the last one (MBPP, `split(...)[-1]`).
    response: str = "first"
    #: The prompt's four-space indents were written as tabs: the answer's tabs go back to spaces.
    tabs: bool = True
    #: Carriage returns are removed (process_humaneval.py does; process_mbpp.py does not).
    strip_cr: bool = True
    #: Where the ```python block ends: "```" (HumanEval) or "\n```" (MBPP).
    fence_close: str = "```"
    #: Markers from which the rest is cut, in upstream's order.
    sections: tuple[str, ...] = ("# Example usage",)
    #: The program starts with the problem's prompt (HumanEval): evalplus and lenient read the
    #: answer after it, so a function-body completion is parsed as the function it completes.
    prompt_prefix: bool = True


HUMANEVAL_RULES = Rules()
#: For benchmarks that say nothing: no tabs to undo, the answer read on its own.
DEFAULT_RULES = Rules(tabs=False, prompt_prefix=False)
MBPP_RULES = Rules(response="last", strip_cr=False, fence_close="\n```",
                   sections=("# Example usage", "# Test examples"), prompt_prefix=False)


@dataclass
class Extraction:
    code: str
    #: What the post-processing removed: {"kind": ..., "text": ...} in the order found.
    cut: list[dict[str, str]] = field(default_factory=list)

    def drop(self, kind: str, text: str) -> None:
        if text.strip():
            self.cut.append({"kind": kind, "text": text.strip()})


def response_text(answer: str, rules: Rules = HUMANEVAL_RULES, result: Extraction | None = None) -> str:
    """The part of a raw answer upstream keeps, with tabs back to spaces where the prompt had them
    (what was left out is recorded in `result`)."""
    parts = answer.split(RESPONSE)
    text = parts[0] if rules.response == "first" else parts[-1]
    if result is not None and len(parts) > 1:
        result.drop("other_response", answer[len(text):] if rules.response == "first" else answer[: -len(text) or None])
    return text.replace("\t", "    ") if rules.tabs else text


def postprocess(answer: str, mode: str = "wizardcoder", rules: Rules = HUMANEVAL_RULES,
                entry_point: str | None = None, prompt: str = "") -> Extraction:
    """The code to run for a raw `answer` (the text after `### Response:`), in `mode`.

    `prompt` is the problem's own prompt (HumanEval: signature and docstring), which `evalplus` and
    `lenient` read before the answer when `rules.prompt_prefix`.

    The cyclic garbage collector is paused meanwhile: the syntax trees of a long answer are many
    objects, and collections triggered by them cost time that grows faster than the answer."""
    steps = {"wizardcoder": lambda: wizardcoder(answer, rules),
             "evalplus": lambda: evalplus(answer, rules, entry_point, prompt),
             "lenient": lambda: lenient(answer, rules, entry_point, prompt)}
    if mode not in steps:
        raise ValueError(f"unknown post-processing mode {mode!r}; expected one of {', '.join(MODES)}")
    paused = gc.isenabled()
    gc.disable()
    try:
        return steps[mode]()
    finally:
        if paused:
            gc.enable()


def wizardcoder(answer: str, rules: Rules = HUMANEVAL_RULES) -> Extraction:
    """process_humaneval.py / process_mbpp.py, restated step by step."""
    result = Extraction("")
    text = response_text(answer, rules, result)
    if rules.strip_cr:
        text = text.replace("\r", "")
    if "```python" in text:
        start = text.index("```python")
        result.drop("prose", text[:start])
        text = text[start:].strip().replace("```python", "")
        end = text.find(rules.fence_close)
        if end >= 0:
            result.drop("after_code", text[end:])
            text = text[:end].strip()
    if '__name__ == "__main__"' in text:
        end = text.find('if __name__ == "__main__":')
        if end >= 0:  # upstream's `.index` raises here otherwise; the answer is kept as is
            result.drop("main_block", text[end:])
            text = text[:end].strip()
    for marker in rules.sections:
        if marker in text:
            end = text.index(marker)
            result.drop("example_section", text[end:])
            text = text[:end].strip()
    result.code = text
    return result


# ---------------------------------------------------------------------------------------------
# Finding the code in an answer: fences, prose, and bounded parsing.


def fenced_blocks(text: str) -> list[tuple[str, int, int]]:
    """(language, start, end) of each ``` block's body, by lines (an unclosed block runs to the end)."""
    blocks: list[tuple[str, int, int]] = []
    position, opened, language = 0, -1, ""
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if stripped.startswith("```"):
            if opened < 0:
                opened, language = position + len(line), stripped[3:].strip().lower()
            else:
                blocks.append((language, opened, position))
                opened = -1
        position += len(line)
    if opened >= 0:
        blocks.append((language, opened, len(text)))
    return blocks


def defines(code: str, name: str) -> bool:
    """Whether a line of `code` starts (after indentation) with `def name(` or `async def name(`."""
    for line in code.split("\n"):
        stripped = line.lstrip()
        for prefix in ("def ", "async def "):
            if stripped.startswith(prefix) and stripped[len(prefix):].lstrip(" ").startswith(name):
                rest = stripped[len(prefix):].lstrip(" ")[len(name):].lstrip(" ")
                if rest.startswith("("):
                    return True
    return False


def _parse(code: str) -> ast.Module | None:
    try:
        return ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # ValueError: a NUL byte
        return None


def _try_parse(code: str) -> tuple[ast.Module | None, int]:
    """(tree, 0) when `code` parses, else (None, the 1-based line where parsing fails)."""
    try:
        return ast.parse(code), 0
    except SyntaxError as exc:
        return None, max(1, exc.lineno or 1)
    except (ValueError, RecursionError, MemoryError):
        return None, 1


def longest_parsing_span(lines: list[str], budget: int = _PARSE_BUDGET) -> tuple[int, int, ast.Module | None]:
    """(start, end, tree) of the longest run of `lines` that parses, by non-blank lines, found by
    splitting at the line each failed parse names, within `budget` parses (linear time)."""
    best, best_size, best_tree = (0, 0), 0, None
    code_lines = [0]  # code_lines[i]: non-blank lines before line i
    for line in lines:
        code_lines.append(code_lines[-1] + (not line.isspace() and line != ""))
    pending = [(0, len(lines))]
    while pending and budget > 0:
        start, end = pending.pop()
        size = code_lines[end] - code_lines[start]
        if size <= best_size:
            continue
        budget -= 1
        tree, bad = _try_parse("\n".join(lines[start:end]))
        if tree is not None:
            best, best_size, best_tree = (start, end), size, tree
            continue
        bad_index = start + bad - 1
        pending.append((bad_index + 1, end))
        pending.append((start, bad_index))  # tried first: code usually precedes the prose after it
    return (*best, best_tree)


def _strip_preamble(text: str, result: Extraction) -> str:
    """Unfenced code after lines of chat ("Sure! Here is the function:"): drop the chat, also when
    the answer starts with blank lines. An indented first line (a function-body completion) or
    code from the first line is kept."""
    lines = text.split("\n")
    first = next((i for i, line in enumerate(lines) if line.strip()), len(lines))
    if first == len(lines) or lines[first][:1].isspace() or lines[first].startswith(_CODE_STARTS):
        return text
    for i in range(first, len(lines)):
        if lines[i].startswith(_CODE_STARTS):
            head = "\n".join(lines[:i])
            if _parse(head) is None:
                result.drop("prose", head)
                return "\n".join(lines[i:])
            return text
    return text


def _pick_block(text: str, entry_point: str | None, result: Extraction) -> str | None:
    """The body of the first Python (or untagged) block defining `entry_point`, else the first one."""
    python = [(s, e) for lang, s, e in fenced_blocks(text) if lang in _PYTHON_FENCES]
    if not python:
        return None
    defining = [(s, e) for s, e in python if entry_point and defines(text[s:e], entry_point)]
    start, end = (defining or python)[0]
    result.drop("prose", text[:start])
    result.drop("after_code", text[end:])
    return text[start:end]


# ---------------------------------------------------------------------------------------------
# evalplus


def _identifiers(node: ast.AST) -> set[str]:
    names: set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            names.add(sub.id)
        elif isinstance(sub, ast.Attribute):
            names.add(sub.attr)
        elif isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(sub.name)
        elif isinstance(sub, ast.arg):
            names.add(sub.arg)
    return names


class _Source:
    """Slices of source by an AST node's positions (`col_offset` counts UTF-8 bytes)."""

    def __init__(self, code: str) -> None:
        self.data = code.encode("utf-8", "surrogatepass")
        self.starts = [0]
        index = self.data.find(b"\n")
        while index >= 0:
            self.starts.append(index + 1)
            index = self.data.find(b"\n", index + 1)

    def offset(self, line: int, col: int) -> int:
        return self.starts[line - 1] + col

    def segment(self, node: ast.stmt) -> str:
        start = self.offset(node.lineno, node.col_offset)
        end = self.offset(node.end_lineno or node.lineno, node.end_col_offset or 0)
        return self.data[start:end].decode("utf-8", "surrogatepass")


def sanitize(code: str, entry_point: str | None) -> str:
    """EvalPlus's sanitizer on `code` (see the module docstring)."""
    lines = code.split("\n")
    start, end, tree = longest_parsing_span(lines)
    code = "\n".join(lines[start:end])
    if tree is None:
        return ""
    source = _Source(code)
    imports: list[ast.stmt] = []
    definitions: list[tuple[str | None, ast.stmt]] = []
    seen: set[str | None] = set()
    for node in tree.body:
        if isinstance(node, ast.Import) or (isinstance(node, ast.ImportFrom) and node.module != "__future__"):
            imports.append(node)
            continue
        name: str | None
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if node.decorator_list:  # tree-sitter calls these decorated_definition, which EvalPlus skips
                continue
            if not isinstance(node, ast.ClassDef) and not any(isinstance(n, ast.Return) for n in ast.walk(node)):
                continue
            name = node.name
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            target = node.targets[0] if isinstance(node, ast.Assign) else node.target
            name = target.id if isinstance(target, ast.Name) else None
        else:
            continue
        if name not in seen:
            seen.add(name)
            definitions.append((name, node))
    reachable: set[str | None] | None = None
    if entry_point:
        deps = {name: _identifiers(node) for name, node in definitions}
        reachable, queue = {entry_point}, [entry_point]
        while queue:
            for neighbour in deps.get(queue.pop(), ()):
                if neighbour not in reachable:
                    reachable.add(neighbour)
                    queue.append(neighbour)
    kept = [source.segment(node) for node in imports]
    kept += [source.segment(node) for name, node in definitions if reachable is None or name in reachable]
    return "\n".join(kept)


def evalplus(answer: str, rules: Rules = HUMANEVAL_RULES, entry_point: str | None = None,
             prompt: str = "") -> Extraction:
    """EvalPlus's sanitizer on the answer. An answer that defines the entry point is sanitized on
    its own (EvalPlus's `solution` format, what its code generation stores for chat models);
    otherwise, with `rules.prompt_prefix`, the prompt, a newline and the answer (its `completion` format)."""
    result = Extraction("")
    text = response_text(answer, rules, result)
    if rules.strip_cr:
        text = text.replace("\r", "")
    completion = rules.prompt_prefix and prompt and not (entry_point and defines(text, entry_point))
    whole = f"{prompt}\n{text}" if completion else text
    result.code = sanitize(whole, entry_point)
    if result.code.strip() != whole.strip():
        result.drop("sanitized", text)
    return result


# ---------------------------------------------------------------------------------------------
# lenient

_OUTPUT_CALLS = {"print", "input", "pprint"}


def _calls(node: ast.AST) -> set[str]:
    """Names of the functions `node` calls by a plain name (`f(...)`)."""
    return {sub.func.id for sub in ast.walk(node) if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name)}


def _touched_names(node: ast.stmt) -> set[str]:
    """Global names `node` may change: names it binds, containers it stores into (`TABLE[k] = v`,
    `obj.x = v`) and objects whose methods it calls (`TABLE.append(x)`)."""
    names = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and isinstance(sub.ctx, (ast.Store, ast.Del)):
            names.add(sub.id)
        elif isinstance(sub, (ast.Subscript, ast.Attribute)) and isinstance(sub.ctx, (ast.Store, ast.Del)):
            base = sub.value
            while isinstance(base, (ast.Subscript, ast.Attribute)):
                base = base.value
            if isinstance(base, ast.Name):
                names.add(base.id)
        elif isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute) and isinstance(sub.func.value, ast.Name):
            names.add(sub.func.value.id)
    return names


def _is_main_block(node: ast.stmt) -> bool:
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare):
        return False
    sides = [node.test.left, *node.test.comparators]
    return any(isinstance(s, ast.Name) and s.id == "__name__" for s in sides) and any(
        isinstance(s, ast.Constant) and s.value == "__main__" for s in sides)


def _example_statements(tree: ast.Module, entry_point: str | None, first_line: int) -> list[tuple[str, ast.stmt]]:
    """Top-level statements (from `first_line` on) that only exercise or print the solution."""
    functions = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    definitions = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    # Names the definitions read: a statement binding one of them is needed.
    needed = set().union(*(_identifiers(d) for d in definitions)) if definitions else set()
    drivers = {name for name, f in functions.items()
               if _calls(f) & {"print", "input"} and not any(isinstance(s, (ast.Global, ast.Nonlocal))
                                                             for s in ast.walk(f))}
    examples: list[tuple[str, ast.stmt]] = []
    for node in tree.body:
        if node.lineno < first_line or node in definitions or isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if _is_main_block(node):
            examples.append(("main_block", node))
        elif isinstance(node, ast.Assert):
            examples.append(("assert", node))
        else:
            calls = _calls(node)
            exercises = bool(calls & _OUTPUT_CALLS) or (entry_point is not None and entry_point in calls)
            # a bare call of a driver function of the answer's own (`main()` that reads input and prints)
            driver = (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
                      and isinstance(node.value.func, ast.Name) and node.value.func.id in drivers
                      and node.value.func.id not in needed and node.value.func.id != entry_point)
            if (exercises or driver) and not (_touched_names(node) & needed):
                kind = "print" if "print" in calls else "call"
                examples.append((kind, node))
    return examples


def _drop_statements(code: str, tree: ast.Module, examples: list[tuple[str, ast.stmt]], result: Extraction,
                     offset: int = 0) -> str:
    """`code` without the lines of `examples` (lines numbered from `offset` + 1 in `tree`). A
    statement sharing a line with one that stays is kept."""
    lines = code.split("\n")
    kept_lines: set[int] = set()
    doomed = {id(n) for _, n in examples}
    for node in tree.body:
        if id(node) not in doomed:
            kept_lines.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    gone: set[int] = set()
    for kind, node in examples:
        span = range(node.lineno, (node.end_lineno or node.lineno) + 1)
        if kept_lines.isdisjoint(span):
            result.drop(kind, "\n".join(lines[i - 1 - offset] for i in span))
            gone.update(span)
    return "\n".join(line for i, line in enumerate(lines, start=1 + offset) if i not in gone)


def lenient(answer: str, rules: Rules = HUMANEVAL_RULES, entry_point: str | None = None,
            prompt: str = "") -> Extraction:
    result = Extraction("")
    text = response_text(answer, rules, result)
    if rules.strip_cr:
        text = text.replace("\r", "")
    code = _pick_block(text, entry_point, result)
    if code is None:
        code = _strip_preamble(text, result)
    tree, offset = _parse(code), 0
    if tree is None and code.lstrip("\n")[:1] in (" ", "\t"):  # a function-body completion:
        # parse it with its prompt (or, for a benchmark without one, under a stand-in signature)
        prefixed = (prompt if rules.prompt_prefix and prompt else "def _completion():\n") + code
        tree = _parse(prefixed)
        if tree is not None:
            offset = prefixed.count("\n") - code.count("\n")
    if tree is None:  # prose after the code: keep the longest run of lines that parses, from the start
        lines = code.split("\n")
        start, end, span_tree = longest_parsing_span(lines)
        if end > start and start == 0:
            result.drop("prose", "\n".join(lines[end:]))
            code, tree = "\n".join(lines[:end]), span_tree
    if tree is not None:
        examples = _example_statements(tree, entry_point, offset + 1)
        code = _drop_statements(code, tree, examples, result, offset)
    result.code = code.rstrip() + "\n"
    return result

