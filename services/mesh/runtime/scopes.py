"""What a scope grants: the one home of the rule every check uses (the services' runtime, the
gateway's generated RBAC, API keys narrowed to their creator, live sockets).

A scope is `area:action` (`tools:execute`); `area:*` grants every action of the area and `*`
grants everything. Nothing else is a wildcard: `*:read` is not a scope.
"""

from __future__ import annotations

from collections.abc import Iterable

ALL = "*"


def area_of(scope: str) -> str:
    return scope.partition(":")[0]


def granting(needed: str) -> tuple[str, ...]:
    """The scopes any one of which grants `needed`: itself, its area's wildcard, `*`."""
    return tuple(dict.fromkeys((needed, f"{area_of(needed)}:*", ALL)))


def holds(scopes: Iterable[str], needed: str) -> bool:
    """Whether `scopes` grant `needed` (`tools:execute`), directly or by `tools:*` or `*`."""
    held = scopes if isinstance(scopes, (set, frozenset)) else set(scopes)
    return any(scope in held for scope in granting(needed))


def common(a: Iterable[str], b: Iterable[str]) -> frozenset[str]:
    """What both sets of scopes grant (`*` and `tools:*` understood): acting for two callers at
    once never grants what either lacks."""
    a, b = frozenset(a), frozenset(b)
    return frozenset({s for s in a if holds(b, s)} | {s for s in b if holds(a, s)})


def within(granted: Iterable[str], held: Iterable[str]) -> list[str]:
    """The part of `granted` (an API key's scopes) that `held` (its creator's scopes now)
    grants: a key never does more than the user who made it may do today. A wildcard the
    creator no longer holds narrows to the creator's scopes inside it (`*` of a demoted admin
    becomes the developer's scopes, `tools:*` of a viewer `tools:read`)."""
    held_set = frozenset(held)
    kept: set[str] = set()
    for scope in granted:
        if holds(held_set, scope):
            kept.add(scope)
        elif scope == ALL:
            kept.update(held_set)
        elif scope.endswith(":*"):
            kept.update(s for s in held_set if area_of(s) == area_of(scope))
    return sorted(kept)
