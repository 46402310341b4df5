"""Regular expressions compiled when first used, and the regex module imported when first used.

A module-level pattern is compiled at import, and leakscan has a few dozen of them: the
offline checks, the encoded-text search, the pickle reader. A pre-receive hook or a scan of a
clean folder uses few of them, and compiling the rest was a good part of its start-up. A
`lazy(...)` pattern compiles on first use; its methods then come straight from the compiled
pattern, at the cost of a plain attribute lookup. Likewise the `regex` module (a seventh of the
hook's imports) is loaded when a rule's pattern is first compiled, which a clean push never needs.
"""

from __future__ import annotations

import importlib
from typing import Any

_FORWARDED = ("search", "match", "fullmatch", "finditer", "findall", "sub", "subn", "split", "pattern", "flags",
              "groups", "groupindex")  # fmt: skip


class _Lazy:
    def __init__(self, module: str, pattern: str | bytes) -> None:
        self._spec = (module, pattern)

    def __getattr__(self, name: str) -> Any:
        if name == "_spec":
            raise AttributeError(name)
        module, pattern = self._spec
        compiled = importlib.import_module(module).compile(pattern)
        for attr in _FORWARDED:
            setattr(self, attr, getattr(compiled, attr))  # found in the instance from now on
        return getattr(compiled, name)


def lazy(pattern: str | bytes) -> Any:
    """`re.compile(pattern)`, done on first use (flags inline: `(?i)`, `(?m)`)."""
    return _Lazy("re", pattern)


def lazy_regex(pattern: str | bytes) -> Any:
    """`regex.compile(pattern)`, done on first use (flags inline: `(?V1)`, `(?r)`)."""
    return _Lazy("regex", pattern)


def lazy_import(name: str) -> Any:
    """The module `name`, imported on first attribute access. Not importlib's LazyLoader: in
    Python 3.11 a second thread touching a module it is still loading sees it half-made, and
    the service scans in threads. Here the import system's own lock does the loading, and the
    module's names are copied in afterwards, so later lookups are plain attribute lookups."""
    return _LazyModule(name)


class _LazyModule:
    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        if attr == "_name":
            raise AttributeError(attr)
        module = importlib.import_module(self._name)
        self.__dict__.update(vars(module))
        return getattr(module, attr)
