"""The scopes of each role, pinned as they are written out (issue 23 derives the areas from the
contract instead of a list in mesh/identity/roles.py: these must not move when it does), and
what follows for a service the contract gains."""

from __future__ import annotations

import pytest

from agentmesh.identity.v1 import identity_pb2 as pb
from mesh.identity.roles import OPERATOR_ONLY, scopes_for
from mesh.runtime.scopes import holds

_BUILDING = ("agents", "calls", "workflows", "tools", "masterdata", "templates", "observability",
             "integration")
VIEWER = {f"{area}:read" for area in (*_BUILDING, "analytics", "governance", "system")}
DEVELOPER = {*(f"{area}:*" for area in _BUILDING), "secrets:read", "secrets:write",
             "analytics:read", "governance:read", "governance:execute", "system:read",
             "apikeys:read", "apikeys:write", "apikeys:delete"}
USER = VIEWER | {"agents:execute", "workflows:execute", "tools:execute", "governance:execute"}
TENANT_ADMIN = {"agents:*", "analytics:*", "apikeys:*", "calls:*", "governance:*",
                "integration:*", "masterdata:*", "observability:*", "secrets:*", "system:read",
                "templates:*", "tools:*", "users:*", "workflows:*"}


@pytest.mark.parametrize("operator", [False, True])
@pytest.mark.parametrize("role, expected", [
    (pb.ROLE_DEVELOPER, DEVELOPER), (pb.ROLE_VIEWER, VIEWER), (pb.ROLE_USER, USER)])
def test_each_roles_scopes_are_the_same_in_every_tenant(role, expected, operator):
    scopes = scopes_for(role, operator)
    assert set(scopes) == expected
    assert len(scopes) == len(expected)  # no scope twice


def test_an_admin_holds_everything_in_an_operator_tenant_and_the_tenant_areas_elsewhere():
    assert scopes_for(pb.ROLE_ADMIN, operator=True) == ("*",)
    assert set(scopes_for(pb.ROLE_ADMIN, operator=False)) == TENANT_ADMIN


def test_no_role_of_another_tenant_reaches_the_operators_scopes():
    for role in (pb.ROLE_ADMIN, pb.ROLE_DEVELOPER, pb.ROLE_VIEWER, pb.ROLE_USER):
        held = frozenset(scopes_for(role, operator=False))
        assert not any(holds(held, scope) for scope in OPERATOR_ONLY), pb.Role.Name(role)


def test_an_unknown_role_holds_nothing():
    assert scopes_for(pb.ROLE_UNSPECIFIED, operator=True) == ()
    assert scopes_for(99, operator=False) == ()


def test_a_service_the_contract_gains_reaches_every_role_without_an_edit():
    from mesh.identity.roles import contract_scopes, role_table

    table = role_table(contract_scopes() | {"reports:read", "reports:write", "reports:delete"})
    assert "reports:*" in table[pb.ROLE_DEVELOPER] and "reports:*" in table[pb.ROLE_ADMIN]
    assert "reports:read" in table[pb.ROLE_VIEWER] and "reports:read" in table[pb.ROLE_USER]
    assert not {"reports:write", "reports:delete"} & set(table[pb.ROLE_VIEWER])
    # The guarded areas stay as they are.
    assert set(table[pb.ROLE_DEVELOPER]) - {"reports:*"} == DEVELOPER
    assert set(table[pb.ROLE_VIEWER]) - {"reports:read"} == VIEWER
