"""The built-in plugin modules, imported by their installed names (evolinstruct.plugins.*)."""

from evolinstruct.plugins import benchmarks, filters, heuristics  # noqa: F401
