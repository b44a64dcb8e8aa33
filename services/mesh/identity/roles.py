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
# The admin of a tenant that does not operate the platform: everything but the platform-wide
# writes (`system:write`: config, restarts, caches, backups), which would let any self-registered
# tenant steer the platform every other tenant runs on.
SYSTEM_WRITE = "system:write"


@functools.cache
def tenant_admin_scopes() -> tuple[str, ...]:
    from mesh import contract

    areas = {rpc.scope.partition(":")[0] for rpc in contract.default().rpcs if rpc.scope}
    return tuple(sorted({f"{a}:*" for a in areas if a != "system"} |
                        {f"system:{rpc.scope.partition(':')[2]}" for rpc in contract.default().rpcs
                         if rpc.scope.startswith("system:") and rpc.scope != SYSTEM_WRITE}))


def scopes_for(role: int, operator: bool) -> tuple[str, ...]:
    """The scopes of a role in a tenant; `operator`: the tenant operates the platform."""
    if role == pb.ROLE_ADMIN and not operator:
        return tenant_admin_scopes()
    return ROLE_SCOPES.get(role, ())

ROLE_DESCRIPTIONS = {
    pb.ROLE_ADMIN: "Everything in the tenant, including users and API keys; platform-wide "
                   "system writes only in an operator tenant (AGENTMESH_OPERATOR_TENANTS).",
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
