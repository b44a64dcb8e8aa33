"""The live service's pure parts: which stream a WebSocket path names and the scope it needs,
the identity's scope rule, and single-use tickets (in memory, without NATS)."""

from __future__ import annotations

import asyncio

import pytest

from mesh.live.routes import Identity, Route, route_of
from mesh.live.tickets import Tickets


@pytest.mark.parametrize("path, route", [
    ("/ws/executions", Route("execution", None, "workflows:read")),
    ("/ws/ex-1", Route("execution", "ex-1", "workflows:read")),
    ("/ws/calls", Route("call", None, "calls:read")),
    ("/ws/calls/c_1?after=3", Route("call", "c_1", "calls:read")),
    ("/ws", None), ("/api/v1/agents", None), ("/ws/a/b", None), ("/ws/calls/a/b", None),
    ("/ws/bad.id", None), ("/ws/" + "x" * 129, None),
])
def test_a_path_names_one_stream_or_none(path, route):
    assert route_of(path) == route


@pytest.mark.parametrize("scopes, allowed", [
    ({"workflows:read"}, True), ({"workflows:*"}, True), ({"*"}, True),
    ({"calls:read", "workflows:write"}, False), (set(), False)])
def test_a_stream_needs_its_scope(scopes, allowed):
    identity = Identity("t", "u", frozenset(scopes))
    assert identity.has_scope(route_of("/ws/executions").scope) is allowed


def test_a_ticket_is_redeemed_once():
    async def scenario():
        tickets = Tickets(None)
        ticket, _ = await tickets.issue({"tenant_id": "t", "user_id": "u", "scopes": ["*"]})
        first = await tickets.redeem(ticket)
        return first, await tickets.redeem(ticket), await tickets.redeem("wst_unknown")

    first, again, unknown = asyncio.run(scenario())
    assert (first["tenant_id"], first["user_id"]) == ("t", "u")
    assert again is None and unknown is None
