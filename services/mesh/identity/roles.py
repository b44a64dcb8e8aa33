"""Roles and the scopes they grant (documented in docs/architecture.md)."""

from __future__ import annotations

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
}
ROLE_DESCRIPTIONS = {
    pb.ROLE_ADMIN: "Everything in the tenant, including users and API keys.",
    pb.ROLE_DEVELOPER: "Builds and runs agents, workflows and tools; cannot manage users.",
    pb.ROLE_VIEWER: "Reads everything except secrets, users and API keys; changes nothing.",
}


def covers(held: set[str] | frozenset[str], wanted: str) -> bool:
    """Whether scopes `held` include `wanted` (which may itself be `area:*` or `*`)."""
    if "*" in held:
        return True
    area, _, action = wanted.partition(":")
    if f"{area}:*" in held:
        return True
    return action != "*" and wanted in held and area != "*"
