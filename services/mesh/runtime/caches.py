"""The in-process caches an operator may clear (`POST /api/v1/system/cache/clear`).

A module that keeps a cache registers it here by name, with a function that clears the entries
whose key matches a glob pattern (or all of them) and returns how many went:

    caches.register_lru("templates", _compiled)          # a functools.lru_cache
    caches.register("policies", policy_cache.clear)      # clear(pattern) -> int

Every cache may be cleared at any time: each only saves recomputing something from the data
(compiled texts, expressions, schemas, policy sets), so clearing one costs time, never
correctness, and clearing twice is the same as clearing once. The system service clears the
caches of its own process at once and publishes a new cache generation; every other service
process clears them when its runtime poll sees that generation (`mesh.runtime.live`).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable

# Every cache name of the platform and what it holds (known even in a process that does not
# load the module owning it, so a name is refused or accepted the same way everywhere).
KNOWN: dict[str, str] = {
    "policies": "compiled governance policy sets, per tenant (keys: tenant ids)",
    "templates": "parsed and compiled prompt/template texts (placeholders)",
    "expressions": "compiled JMESPath expressions of workflow definitions",
    "schemas": "compiled JSON Schema validators of user schemas (tools, workflows)",
    "config": "the runtime configuration and feature flags a process last fetched",
}

_registry: dict[str, list[Callable[[str], int]]] = {}


def register(name: str, clear: Callable[[str], int]) -> None:
    if name not in KNOWN:
        raise ValueError(f"unknown cache {name!r}; add it to mesh.runtime.caches.KNOWN")
    _registry.setdefault(name, []).append(clear)


def register_lru(name: str, function) -> None:
    """A `functools.lru_cache` function: its keys are not names, so it is cleared whole."""

    def clear(_pattern: str) -> int:
        size = function.cache_info().currsize
        function.cache_clear()
        return size

    register(name, clear)


def matching(keys, pattern: str) -> list:
    return [k for k in keys if not pattern or fnmatch.fnmatchcase(str(k), pattern)]


def clear(names: list[str] | tuple[str, ...] = (), pattern: str = "") -> dict[str, int]:
    """Clears the named caches (all when empty) of this process: entries removed per cache."""
    removed = {}
    for name in names or KNOWN:
        removed[name] = sum(fn(pattern) for fn in _registry.get(name, ()))
    return removed
