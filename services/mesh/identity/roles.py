"""Roles and the scopes they grant (documented in docs/architecture.md).

The areas come from the contract (each RPC's `agentmesh.common.v1.auth` scope, `area:action`),
so a service the contract gains is a building area at once: developers hold `area:*`, viewers
and users `area:read`, a tenant's admin `area:*`. Only the areas guarded from some role are
named here, with what each role holds in them.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from agentmesh.identity.v1 import identity_pb2 as pb
from mesh import contract
from mesh.runtime import scopes
from mesh.runtime.scopes import granting, holds

# What only an operator tenant's admin holds (`*` covers them): `system:write` (platform config,
# restarts, caches, backups), which would let any self-registered tenant steer the platform every
# other tenant runs on, and `platform:read` (service addresses and migrations, the runtime
# configuration, host and all-tenant metrics, platform alerts, feature flags and their tenants),
# which is the platform's inside, not the tenant's own data. Every other tenant's admin holds
# everything else.
SYSTEM_WRITE = "system:write"
PLATFORM_AREA = "platform"
OPERATOR_ONLY = (SYSTEM_WRITE, f"{PLATFORM_AREA}:read")

# The areas not every role builds in or reads: the actions a developer and a viewer hold there.
# Any other area is a building area.
GUARDED: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # area          developer                        viewer
    "users": ((), ()),  # people and their roles are the admin's
    "apikeys": (("read", "write", "delete"), ()),  # a developer's own keys; a viewer makes none
    "secrets": (("read", "write"), ()),  # values reach services only; deleting is the admin's
    PLATFORM_AREA: ((), ()),  # the operator's (OPERATOR_ONLY)
    "system": (("read",), ("read",)),  # system:write is the operator's
    "governance": (("read", "execute"), ("read",)),  # policies are the admin's to write
    "analytics": (("read",), ("read",)),  # figures over other areas: read only
}
# Seed 001's "user": uses what developers build. The viewer's reads, and talking to agents
# (interact; dispatch, seed 002's way to call reasoning), running workflows (and answering
# their approvals) and tools; creates, changes and deletes nothing.
USER_EXECUTES = ("agents", "workflows", "tools", "governance")

# In the order ListRoles shows them.
ROLES = (pb.ROLE_ADMIN, pb.ROLE_DEVELOPER, pb.ROLE_VIEWER, pb.ROLE_USER)
ROLE_DESCRIPTIONS = {
    pb.ROLE_ADMIN: "Everything in the tenant, including users and API keys; the platform's "
                   "internals (platform:read) and platform-wide writes (system:write) only in an "
                   "operator tenant (AGENTMESH_OPERATOR_TENANTS).",
    pb.ROLE_DEVELOPER: "Builds and runs agents, workflows and tools; cannot manage users.",
    pb.ROLE_VIEWER: "Reads everything except secrets, users and API keys; changes nothing.",
    pb.ROLE_USER: "Uses what others build: reads like a viewer, talks to agents, runs workflows "
                  "and tools; creates, changes and deletes nothing.",
}


@functools.cache
def contract_scopes() -> frozenset[str]:
    """Every scope an RPC of the contract requires."""
    return frozenset(rpc.scope for rpc in contract.default().rpcs if rpc.scope)


def role_table(scopes: Iterable[str]) -> dict[int, tuple[str, ...]]:
    """Each role's scopes in a tenant that does not operate the platform, for a contract whose
    RPCs require `scopes`."""
    scopes = set(scopes)
    areas = sorted({s.partition(":")[0] for s in scopes})
    developer, viewer = set(), set()
    for area in areas:
        if area in GUARDED:
            builds, reads = GUARDED[area]
            developer.update(f"{area}:{action}" for action in builds)
            viewer.update(f"{area}:{action}" for action in reads)
        else:
            developer.add(f"{area}:*")
            viewer.add(f"{area}:read")
    user = viewer | {f"{area}:execute" for area in USER_EXECUTES}
    admin = {f"{a}:*" for a in areas if a not in ("system", PLATFORM_AREA)} | \
        {s for s in scopes if s.startswith("system:") and s not in OPERATOR_ONLY}
    return {pb.ROLE_ADMIN: tuple(sorted(admin)), pb.ROLE_DEVELOPER: tuple(sorted(developer)),
            pb.ROLE_VIEWER: tuple(sorted(viewer)), pb.ROLE_USER: tuple(sorted(user))}


@functools.cache
def _table() -> dict[int, tuple[str, ...]]:
    return role_table(contract_scopes())


def tenant_admin_scopes() -> tuple[str, ...]:
    return _table()[pb.ROLE_ADMIN]


def scopes_for(role: int, operator: bool) -> tuple[str, ...]:
    """The scopes of a role in a tenant; `operator`: the tenant operates the platform."""
    if role == pb.ROLE_ADMIN and operator:
        return ("*",)
    return _table().get(role, ())


def known_scopes() -> set[str]:
    """Every scope an API key may name: each RPC's scope, `area:*` for each area, and `*`."""
    scopes = contract_scopes()
    return {granted for scope in scopes for granted in granting(scope)}


def effective_scopes(granted: list[str] | tuple[str, ...], held: tuple[str, ...] | list[str]
                     ) -> list[str]:
    """An API key's scopes cut to what its creator holds now (`mesh.runtime.scopes.within`)."""
    return scopes.within(granted, held)
