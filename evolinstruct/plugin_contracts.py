"""The contracts of plugin objects, checked where a mistake is made.

A plugin's mistake must stop the run with one line naming the plugin, its distribution and version,
what was expected and how to fix it: never a traceback from deep in the core (``'bool' object has
no attribute 'rule'``). Two places catch them:

* at registration (:func:`registration_problem`), what can be seen without calling the object:
  a class registered where an instance is expected (or the reverse for backends), a missing or
  non-callable method, a backend that implements neither ``complete`` nor ``complete_many``;
* at the first call (:class:`Checked` for filters and benchmarks, :func:`check_backend` for a
  backend instance), the type of every value a method the core calls returns.

The registry wraps every object it hands out, so core code (the evolution loop, scoring) calls
plugin objects as before and never checks a type itself. Wrapped objects pickle (for worker pools).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from evolinstruct.core.errors import PluginError
from evolinstruct.core.records import Rejection
from evolinstruct.evaluate.benchmarks import Problem
from evolinstruct.evolve.heuristics import Heuristic


@dataclass(frozen=True)
class Returns:
    """What one method must return: a predicate, the expected type in words, and a hint."""

    ok: Callable[[Any], bool]
    expected: str
    hint: str


def _problems(value: Any) -> bool:
    return isinstance(value, list | tuple) and all(isinstance(p, Problem) for p in value)


def _labels(value: Any) -> bool:
    return isinstance(value, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


PROBLEMS = Returns(_problems, "a list of evolinstruct.api.Problem",
                   "build each problem as Problem(task_id, prompt, test, entry_point)")

#: kind -> {method: what it returns}: every method the core calls on a plugin object of that kind.
RETURNS: dict[str, dict[str, Returns]] = {
    "filter": {
        "judge_prompt": Returns(lambda v: v is None or isinstance(v, str), "a str or None",
                                "return the prompt for the LLM judge, or None for a rule-only filter"),
        "check": Returns(lambda v: v is None or isinstance(v, Rejection), "an evolinstruct.api.Rejection or None",
                         "return Rejection(rule, evidence) to reject the candidate, None to keep it"),
    },
    "benchmark": {
        "load": PROBLEMS,
        "contamination_problems": PROBLEMS,
        "instruction": Returns(lambda v: isinstance(v, str), "a str", "return the instruction text the model answers"),
        "prompt": Returns(lambda v: isinstance(v, str), "a str", "return the whole prompt text"),
        "program": Returns(lambda v: isinstance(v, str), "a str",
                           "return the Python source: the model's code followed by the problem's tests"),
        "describe": Returns(_labels, "a mapping of str to str", "return labels such as {'prompt': 'alpaca', 'set': 'full'}"),
    },
}
#: The methods a filter or benchmark must have (the others above are optional).
REQUIRED = {"filter": ("judge_prompt", "check"), "benchmark": ("load", "instruction", "program")}
EXPECTED = {"heuristic": "an evolinstruct.api.Heuristic", "filter": "an object implementing evolinstruct.api.Filter",
            "benchmark": "an object implementing evolinstruct.api.Benchmark"}


def describe_value(value: Any) -> str:
    """A returned value in words: "True (a bool)", "a list whose item 0 is a dict"."""
    if isinstance(value, bool) or value is None:
        return f"{value!r}" + (" (a bool)" if isinstance(value, bool) else "")
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            if not isinstance(item, Problem):
                return f"a {type(value).__name__} whose item {i} is a {type(item).__name__}"
    if isinstance(value, type):
        return f"the class {value.__name__}"
    return f"a {type(value).__name__}"


class PluginContractError(PluginError):
    """A plugin object broke its contract (a wrong return type): a bug that every call would meet,
    so the run stops at once rather than failing record after record."""


def wrong_return(source: str, method: str, value: Any, returns: Returns) -> PluginContractError:
    return PluginContractError(f"{source}: {method}() returned {describe_value(value)}; expected {returns.expected}",
                       returns.hint)


def registration_problem(kind: str, obj: Any) -> tuple[str, str] | None:
    """Why `obj` cannot be registered as a `kind` (seen without calling it), and a hint; or None."""
    from evolinstruct.llm.backends import Backend

    if kind == "backend":
        if isinstance(obj, Backend):
            name = type(obj).__name__
            return (f"registered an instance of {name} where a subclass of evolinstruct.api.Backend (the class, "
                    "not an instance) is expected", f"call register({name}); the core constructs it with the evolver params")
        if not (isinstance(obj, type) and issubclass(obj, Backend)):
            return (f"registered {describe_value(obj)} where a subclass of evolinstruct.api.Backend (the class) is "
                    "expected", "subclass evolinstruct.api.Backend and register the class")
        if obj.complete is Backend.complete and obj.complete_many is Backend.complete_many:
            return (f"backend class {obj.__name__} implements neither complete nor complete_many",
                    "implement `async def complete(self, prompt, sampling) -> Completion` (docs/plugins.md)")
        if obj.supports_batch and any(getattr(obj, m) is getattr(Backend, m)
                                      for m in ("submit_batch", "poll_batch", "batch_results")):
            return (f"backend class {obj.__name__} sets supports_batch but does not implement submit_batch, "
                    "poll_batch and batch_results", "implement the three batch methods, or leave supports_batch False")
        return None
    if isinstance(obj, type):
        return (f"registered the class {obj.__name__} where {EXPECTED[kind]} (an instance) is expected",
                f"call register({obj.__name__}(...)), not register({obj.__name__})")
    if isinstance(obj, list | tuple | set):
        return (f"registered {describe_value(obj)} where {EXPECTED[kind]} is expected",
                "call register(obj) once per object")
    if kind == "heuristic":
        if isinstance(obj, Heuristic):
            return None
        return (f"registered {describe_value(obj)} where {EXPECTED[kind]} is expected",
                "register Heuristic(name, family, template, weight)")
    missing = [m for m in REQUIRED[kind] if not callable(getattr(obj, m, None))]
    if missing:
        return (f"registered {describe_value(obj)} where {EXPECTED[kind]} is expected: it has no method "
                f"{', '.join(missing)}", f"implement {', '.join(REQUIRED[kind])} (docs/plugins.md)")
    return None


class Checked:
    """A filter or benchmark as the core sees it: attribute access goes to the plugin's object,
    and each method in ``RETURNS[kind]`` has its result checked; a wrong one is a PluginError
    naming the plugin (``source``), the method, what it returned and what was expected."""

    def __init__(self, obj: Any, kind: str, source: str) -> None:
        self.__dict__.update(_obj=obj, _kind=kind, _source=source)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_obj", "_kind", "_source"):
            raise AttributeError(name)  # pickling and copying look these up before __init__ ran
        value = getattr(self._obj, name)
        returns = RETURNS[self._kind].get(name)
        if returns is None or not callable(value):
            return value
        source = self._source

        @functools.wraps(value)
        def checked(*args: Any, **kwargs: Any) -> Any:
            result = value(*args, **kwargs)
            if not returns.ok(result):
                raise wrong_return(source, name, result, returns)
            return result

        self.__dict__[name] = checked  # found without __getattr__ from now on (not pickled)
        return checked

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._obj, name, value)

    def __getstate__(self) -> dict[str, Any]:
        return {key: self.__dict__[key] for key in ("_obj", "_kind", "_source")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return f"Checked({self._obj!r})"

    @property
    def unwrapped(self) -> Any:
        """The plugin's own object."""
        return self._obj


def unwrap(obj: Any) -> Any:
    """The plugin's own object behind a :class:`Checked` one (or `obj` itself)."""
    return obj.unwrapped if isinstance(obj, Checked) else obj


def _backend_returns() -> dict[str, Returns]:
    from evolinstruct.llm.backends import BatchStatus, Completion
    from evolinstruct.llm.dispatch import Control, Fatal, Retry

    completion = Returns(lambda v: isinstance(v, Completion) and isinstance(v.text, str), "an evolinstruct.api.Completion "
                         "(with a str text)", "return Completion(text, finish_reason, prompt_tokens, completion_tokens)")
    return {
        "complete": completion,
        "check_ready": Returns(lambda v: v is None, "None", "raise an EvolError to refuse; return nothing"),
        "classify": Returns(lambda v: v is None or isinstance(v, Retry), "an evolinstruct.api.Retry or None",
                            "return Retry() (optionally Retry(after=seconds)) to retry, None not to"),
        "provider_failure": Returns(lambda v: isinstance(v, bool), "a bool", "return True for the provider's failures"),
        "fatal": Returns(lambda v: v is None or isinstance(v, Fatal), "an evolinstruct.api.Fatal or None",
                         "return Fatal(kind, message) for errors every request would meet, else None"),
        "control": Returns(lambda v: isinstance(v, Control), "an evolinstruct.api.Control",
                           "return super().control(), adjusted"),
        "complete_many": Returns(lambda v: v is None, "None", "pass each answer to on_done(index, completion); return nothing"),
        "submit_batch": Returns(lambda v: isinstance(v, str), "a str (the batch id)", "return the provider's batch id"),
        "poll_batch": Returns(lambda v: isinstance(v, BatchStatus), "an evolinstruct.api.BatchStatus",
                              "return BatchStatus(ended, done, total, state)"),
        "batch_results": Returns(lambda v: isinstance(v, Mapping) and all(isinstance(c, Completion) for c in v.values()),
                                 "a dict of custom_id to evolinstruct.api.Completion",
                                 "return {custom_id: Completion(text, ...)} for the requests that succeeded"),
        "on_done": completion,
    }


def check_backend(backend: Any, source: str) -> Any:
    """Check the results of every method the core calls on `backend` (an instance), by shadowing
    each with a checking wrapper on the instance: calls the backend makes on itself are checked
    too, and the class (which `type(backend)` tests look at) is untouched. Returns `backend`."""
    returns = _backend_returns()
    for name, spec in returns.items():
        method = getattr(backend, name, None)
        if name == "on_done" or method is None or not callable(method):
            continue
        backend.__dict__[name] = _checked_method(method, name, spec, source, returns["on_done"])
    return backend


def _checked_method(method: Callable[..., Any], name: str, spec: Returns, source: str, done: Returns) -> Callable[..., Any]:
    def check(result: Any) -> Any:
        if not spec.ok(result):
            raise wrong_return(source, name, result, spec)
        return result

    if name == "complete_many":
        @functools.wraps(method)
        async def complete_many(prompts: Any, sampling: Any, on_done: Callable[[int, Any], None], *rest: Any,
                                **kwargs: Any) -> Any:
            def checked_done(index: int, outcome: Any) -> None:
                if not isinstance(outcome, BaseException) and not done.ok(outcome):
                    raise wrong_return(source, "complete_many", outcome, Returns(
                        done.ok, "on_done(index, an evolinstruct.api.Completion or an exception)", done.hint))
                on_done(index, outcome)

            return check(await method(prompts, sampling, checked_done, *rest, **kwargs))

        return complete_many
    if name == "fatal":
        from evolinstruct.llm.dispatch import Fatal

        @functools.wraps(method)
        def fatal(error: BaseException) -> Any:
            if isinstance(error, PluginContractError):  # every request would meet it: stop the run
                return Fatal("plugin", f"{error.message}; fix: {error.hint}")
            return check(method(error))

        return fatal
    if inspect.iscoroutinefunction(method):
        @functools.wraps(method)
        async def checked_async(*args: Any, **kwargs: Any) -> Any:
            return check(await method(*args, **kwargs))

        return checked_async

    @functools.wraps(method)
    def checked(*args: Any, **kwargs: Any) -> Any:
        return check(method(*args, **kwargs))

    return checked


__all__ = ["Checked", "PluginContractError", "RETURNS", "Returns", "check_backend", "registration_problem", "unwrap"]
