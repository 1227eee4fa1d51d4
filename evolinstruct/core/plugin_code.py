"""Running plugin code: a bug in a plugin is named with its plugin and distribution, not lost.

Domain code (the evolution loop, scoring) wraps its calls into plugin objects in `plugin_code`.
It lives in core so that the domains need not import the registry; the registry tells it how to
name a plugin object (`set_namer`) when it is created.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from evolinstruct.core.errors import EvolError, PluginError

log = logging.getLogger(__name__)
_logged: set[tuple[str, str, str]] = set()


def _plain_name(kind: str, name: str) -> str:
    return f"{kind} '{name}'"


_namer: Callable[[str, str], str] = _plain_name


def set_namer(namer: Callable[[str, str], str] | None) -> None:
    """How to name the plugin object `kind` `name` in messages ("filter 'x' of plugin 'p' (dist
    1.0)"); the registry sets its own. None restores the plain name."""
    global _namer
    _namer = namer or _plain_name


def describe(kind: str, name: str) -> str:
    """The plugin object `kind` `name` as messages name it, with its plugin and distribution."""
    return _namer(kind, name)


def plugin_failure(kind: str, name: str, exc: BaseException) -> PluginError:
    """A PluginError naming the plugin (and its distribution) whose `kind` `name` raised `exc`;
    the traceback goes to the log, once per plugin object and exception type."""
    source = _namer(kind, name)
    marker = (kind, name, type(exc).__name__)
    if marker not in _logged:
        _logged.add(marker)
        log.error("%s raised %s (a bug in the plugin):", source, type(exc).__name__, exc_info=exc)
    error = PluginError(f"{source} raised {type(exc).__name__}: {exc}",
                        "a bug in the plugin; its traceback is in the log")
    error.__cause__ = exc
    return error


@contextmanager
def plugin_code(kind: str, name: str) -> Iterator[None]:
    """Run plugin code: an exception other than an EvolError (a user error the plugin reports
    itself) becomes a PluginError naming the plugin, with the traceback logged."""
    try:
        yield
    except EvolError:
        raise
    except Exception as exc:
        raise plugin_failure(kind, name, exc) from exc
