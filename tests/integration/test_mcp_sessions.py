"""The MCP listener's session ids (mesh/integration/mcp_listener.py): they carry the client's
name from `initialize` to every later request, and the middleware answers what the stateless
transport would not (DELETE, a GET without a verified tenant) by itself."""

from __future__ import annotations

import asyncio
import json

from mesh.integration.mcp_listener import (SESSION_HEADER, Sessions, _initialize_client,
                                           client_of, session_id)
from mesh.runtime.context import MCP_CLIENT_HEADER


def test_a_session_id_holds_the_clients_name_in_visible_ascii():
    for name in ("claude-code", "Ünïcode client ✓", "x" * 300, "é" * 80):
        made = session_id(name)
        assert all(0x21 <= ord(c) <= 0x7E for c in made)
        assert client_of(made) == name.encode()[:100].decode(errors="ignore")[:100]
    assert session_id("a") != session_id("a")  # random per session
    assert client_of("someone-elses-id") == "" and client_of("amc.!!!.x") == ""


def test_the_client_of_an_initialize_body():
    body = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"clientInfo": {"name": "ide", "version": "1"}}}
    assert _initialize_client(json.dumps(body).encode()) == "ide"
    assert _initialize_client(b'{"method": "tools/list"}') is None
    assert _initialize_client(b"not json") is None


def _call(app, method, headers=(), body=b""):
    sent, seen = [], {}

    async def inner(scope, receive, send):
        seen["headers"] = dict(scope["headers"])
        seen["body"] = (await receive())["body"]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": method, "path": "/api/v1/mcp",
             "headers": [(k.encode(), v.encode()) for k, v in headers]}
    asyncio.run(Sessions(inner, mcp=None, poll_seconds=1)(scope, receive, send))
    return sent, seen


def test_initialize_gets_a_session_id_and_later_requests_carry_the_name():
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                       "params": {"clientInfo": {"name": "ide"}}}).encode()
    sent, seen = _call(None, "POST", body=body)
    given = dict(sent[0]["headers"])[SESSION_HEADER].decode()
    assert client_of(given) == "ide" and seen["body"] == body
    assert seen["headers"][MCP_CLIENT_HEADER.encode()] == b"ide"
    # A later request: the name from its session id, whatever the client claims in a header.
    sent, seen = _call(None, "POST", headers=[("mcp-session-id", given),
                                              (MCP_CLIENT_HEADER, "forged")],
                       body=b'{"jsonrpc": "2.0", "id": 2, "method": "tools/list"}')
    assert seen["headers"][MCP_CLIENT_HEADER.encode()] == b"ide"
    assert SESSION_HEADER not in seen["headers"]  # the stateless transport never sees it
    assert SESSION_HEADER not in dict(sent[0]["headers"])


def test_delete_ends_nothing_and_a_get_needs_a_tenant():
    sent, _ = _call(None, "DELETE", headers=[("mcp-session-id", session_id("ide"))])
    assert sent[0]["status"] == 204
    sent, _ = _call(None, "GET", headers=[("accept", "text/event-stream")])
    assert sent[0]["status"] == 401
    sent, _ = _call(None, "GET", headers=[("accept", "application/json")])
    assert sent[0]["status"] == 406
