"""Roles and the scopes they grant (documented in docs/architecture.md)."""

from __future__ import annotations

import functools

from agentmesh.identity.v1 import identity_pb2 as pb

BUILD_AREAS = ("agents", "calls", "workflows", "tools", "masterdata", "templates",
               "observability", "integration")
READ_AREAS = (*BUILD_AREAS, "analytics", "governance", "system")

ROLE_SCOPES: dict[int, tuple[str, ...]] = {
    pb.ROLE_ADMIN: ("*",),
    pb.ROLE_DEVELOPER: (*(f"{a}:*" for a in BUILD_AREAS), "secrets:read", "secrets:write",
                        "analytics:read", "governance:read", "governance:execute",
                        "system:read", "apikeys:read", "apikeys:write", "apikeys:delete"),
    pb.ROLE_VIEWER: tuple(f"{a}:read" for a in READ_AREAS),
    # Seed 001's "user": uses what developers build. The viewer's reads, and talking to agents
    # (interact; dispatch, seed 002's way to call reasoning), running workflows (and answering
    # their approvals) and tools; creates, changes and deletes nothing.
    pb.ROLE_USER: (*(f"{a}:read" for a in READ_AREAS), "agents:execute", "workflows:execute",
                   "tools:execute", "governance:execute"),
}
# What only an operator tenant's admin holds (`*` covers them): `system:write` (platform config,
# restarts, caches, backups), which would let any self-registered tenant steer the platform every
# other tenant runs on, and `platform:read` (service addresses and migrations, the runtime
# configuration, host and all-tenant metrics, platform alerts, feature flags and their tenants),
# which is the platform's inside, not the tenant's own data. Every other tenant's admin holds
# everything else.
SYSTEM_WRITE = "system:write"
PLATFORM_AREA = "platform"
OPERATOR_ONLY = (SYSTEM_WRITE, f"{PLATFORM_AREA}:read")


@functools.cache
def tenant_admin_scopes() -> tuple[str, ...]:
    from mesh import contract

    scopes = {rpc.scope for rpc in contract.default().rpcs if rpc.scope}
    areas = {s.partition(":")[0] for s in scopes}
    return tuple(sorted({f"{a}:*" for a in areas if a not in ("system", PLATFORM_AREA)} |
                        {s for s in scopes if s.startswith("system:") and s not in OPERATOR_ONLY}))


def scopes_for(role: int, operator: bool) -> tuple[str, ...]:
    """The scopes of a role in a tenant; `operator`: the tenant operates the platform."""
    if role == pb.ROLE_ADMIN and not operator:
        return tenant_admin_scopes()
    return ROLE_SCOPES.get(role, ())


def effective_scopes(granted: list[str] | tuple[str, ...], held: tuple[str, ...] | list[str]
                     ) -> list[str]:
    """The part of `granted` (an API key's scopes) that `held` (its creator's scopes now)
    covers: a key never does more than the user who made it may do today. A wildcard the
    creator no longer holds narrows to the creator's scopes inside it (`*` of a demoted admin
    becomes the developer's scopes, `tools:*` of a viewer `tools:read`)."""
    held_set = frozenset(held)
    kept: set[str] = set()
    for scope in granted:
        if covers(held_set, scope):
            kept.add(scope)
        elif scope == "*":
            kept.update(held_set)
        elif scope.endswith(":*"):
            area = scope[:-2]
            kept.update(s for s in held_set if s.partition(":")[0] == area)
    return sorted(kept)


ROLE_DESCRIPTIONS = {
    pb.ROLE_ADMIN: "Everything in the tenant, including users and API keys; the platform's "
                   "internals (platform:read) and platform-wide writes (system:write) only in an "
                   "operator tenant (AGENTMESH_OPERATOR_TENANTS).",
    pb.ROLE_DEVELOPER: "Builds and runs agents, workflows and tools; cannot manage users.",
    pb.ROLE_VIEWER: "Reads everything except secrets, users and API keys; changes nothing.",
    pb.ROLE_USER: "Uses what others build: reads like a viewer, talks to agents, runs workflows "
                  "and tools; creates, changes and deletes nothing.",
}


def covers(held: set[str] | frozenset[str], wanted: str) -> bool:
    """Whether scopes `held` include `wanted` (which may itself be `area:*` or `*`)."""
    if "*" in held:
        return True
    area, _, action = wanted.partition(":")
    if f"{area}:*" in held:
        return True
    return action != "*" and wanted in held and area != "*"
