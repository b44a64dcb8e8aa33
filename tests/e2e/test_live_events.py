"""Live events over WebSocket through the real gateway (docs/live-events.md): an execution's
progress in order then its final state, resume with a sequence number, tenant isolation, no
socket without credentials, tickets for browsers, and a slow consumer dropped with a close code
on a mesh whose events travel over NATS JetStream."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from pathlib import Path

import httpx2
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.conftest import register, start_mesh, stop_mesh

ENDED = {"EXECUTION_STATUS_COMPLETED", "EXECUTION_STATUS_FAILED", "EXECUTION_STATUS_CANCELLED"}
NATS_URL = os.environ.get("AGENTMESH_TEST_NATS_URL", "nats://127.0.0.1:4222")


def _ws(mesh, path: str) -> str:
    return mesh.url.replace("http://", "ws://") + path


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _approval_flow(client: httpx2.Client) -> dict:
    """prepare -> approve (waits for a person) -> write: the execution pauses where a test
    wants it, with events before and after."""
    steps = [
        {"id": "prepare", "type": "STEP_TYPE_TRANSFORM",
         "transform": {"expression": "{topic: inputs.topic}"}},
        {"id": "approve", "type": "STEP_TYPE_APPROVAL", "depends_on": ["prepare"],
         "approval": {"message": "go?"}},
        {"id": "write", "type": "STEP_TYPE_TRANSFORM", "depends_on": ["approve"],
         "transform": {"expression": "join(' ', ['report on', inputs.topic])"}},
    ]
    reply = client.post("/api/v1/workflows", json={"name": f"live-{uuid.uuid4().hex[:8]}",
                                                    "steps": steps})
    assert reply.status_code == 200, reply.text
    workflow = reply.json()
    assert client.post(f"/api/v1/workflows/{workflow['id']}/activate", json={}).status_code == 200
    started = client.post(f"/api/v1/workflows/{workflow['id']}/execute",
                          json={"inputs": {"topic": "live"}})
    assert started.status_code == 200, started.text
    return started.json()


async def _read_until(socket, done) -> list[dict]:
    seen = []
    while True:
        message = json.loads(await asyncio.wait_for(socket.recv(), 30))
        seen.append(message)
        if done(message):
            return seen


async def _wait_status(client: httpx2.Client, execution_id: str, status: str) -> None:
    for _ in range(300):
        if client.get(f"/api/v1/workflows/executions/{execution_id}").json()["status"] == status:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"execution never reached {status}")


def _approve(client: httpx2.Client, execution_id: str) -> None:
    reply = client.post(f"/api/v1/workflows/executions/{execution_id}/steps/approve/approve",
                        json={"comment": "yes"})
    assert reply.status_code == 200, reply.text


def test_progress_in_order_then_final_state_and_resume(mesh, tenant):
    async def scenario():
        with mesh.client(tenant.token) as client:
            execution = _approval_flow(client)
            path = f"/ws/{execution['id']}"
            async with connect(_ws(mesh, path), additional_headers=_auth(tenant.token)) as ws:
                first = json.loads(await ws.recv())
                assert first["type"] == "state"
                assert first["payload"]["execution_id"] == execution["id"]
                before = [first] + (await _read_until(ws, lambda m: m["payload"].get(
                    "status") == "EXECUTION_STATUS_WAITING_APPROVAL")
                    if first["payload"]["status"] != "EXECUTION_STATUS_WAITING_APPROVAL" else [])
                await ws.send(json.dumps({"type": "ping"}))
                assert json.loads(await ws.recv())["type"] == "pong"
                last_seq = before[-1]["seq"]
            # Away while it goes on: approve, let it finish, then come back with the last seq.
            _approve(client, execution["id"])
            async with connect(_ws(mesh, f"{path}?after={last_seq}"),
                               additional_headers=_auth(tenant.token)) as ws:
                missed = [json.loads(m) async for m in ws]
                assert ws.close_code == 1000
            final = client.get(f"/api/v1/workflows/executions/{execution['id']}").json()
        assert final["status"] == "EXECUTION_STATUS_COMPLETED"
        # While it ran: progress events in order, every one after the first state newer.
        assert all(m["type"] == "execution.progress" for m in before[1:])
        ids = [m["payload"]["event_id"] for m in before]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        assert [m["seq"] for m in before] == sorted(m["seq"] for m in before)
        assert before[-1]["payload"]["current_phase"] == "approve"
        # The missed events: only those after the seq, in order, the final state last.
        assert missed and all(m["seq"] > last_seq for m in missed)
        assert [m["seq"] for m in missed] == sorted(m["seq"] for m in missed)
        assert [m["payload"]["event_id"] for m in missed] == \
            sorted(m["payload"]["event_id"] for m in missed)
        assert missed[0]["payload"]["event_id"] == ids[-1] + 1
        assert missed[-1]["payload"]["status"] == "EXECUTION_STATUS_COMPLETED"
        assert missed[-1]["payload"]["progress"] == 100
        assert "approve" in missed[-1]["payload"]["phases_completed"]
        assert all(m["payload"]["status"] not in ENDED for m in missed[:-1])
    asyncio.run(scenario())


def test_tenants_see_only_their_own_events(mesh, tenant, other_tenant):
    async def scenario():
        with mesh.client(tenant.token) as client:
            execution = _approval_flow(client)
            # Another tenant cannot open the execution's socket at all (404, as over REST)...
            with pytest.raises(InvalidStatus) as refused:
                async with connect(_ws(mesh, f"/ws/{execution['id']}"),
                                   additional_headers=_auth(other_tenant.token)):
                    pass
            assert refused.value.response.status_code == 404
            # ...and its tenant-wide socket stays silent while this tenant's shows the events.
            async with connect(_ws(mesh, "/ws/executions"),
                               additional_headers=_auth(other_tenant.token)) as theirs, \
                    connect(_ws(mesh, "/ws/executions"),
                            additional_headers=_auth(tenant.token)) as ours:
                assert json.loads(await theirs.recv())["type"] == "state"
                assert json.loads(await ours.recv())["type"] == "state"
                await _wait_status(client, execution["id"], "EXECUTION_STATUS_WAITING_APPROVAL")
                _approve(client, execution["id"])
                mine = await _read_until(ours, lambda m: m["payload"].get("status") in ENDED)
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(theirs.recv(), 1.0)
        assert {m["payload"]["execution_id"] for m in mine} == {execution["id"]}
        assert mine[-1]["payload"]["status"] == "EXECUTION_STATUS_COMPLETED"
    asyncio.run(scenario())


def test_no_credentials_refused_before_the_upgrade(mesh, tenant):
    async def scenario():
        for headers in ({}, {"Authorization": "Bearer not-a-token"},
                        # identity headers from a client are removed by the gateway
                        {"x-agentmesh-tenant-id": tenant.tenant_id,
                         "x-agentmesh-scopes": "*"}):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(_ws(mesh, "/ws/executions"), additional_headers=headers):
                    pass
            assert refused.value.response.status_code == 401
            body = json.loads(refused.value.response.body)
            assert body["error"] == "UNAUTHENTICATED" and body["correlation_id"]
        with pytest.raises(InvalidStatus) as refused:
            async with connect(_ws(mesh, "/ws/executions?ticket=wst_made-up"),):
                pass
        assert refused.value.response.status_code == 401
    asyncio.run(scenario())


def test_browser_ticket_opens_one_socket_once(mesh, tenant):
    with mesh.client(tenant.token) as client:
        reply = client.post("/api/v1/live/tickets", json={})
        assert reply.status_code == 200, reply.text
        ticket = reply.json()
    assert ticket["ticket"].startswith("wst_") and ticket["expires_in"] == 30
    with mesh.client() as client:  # a ticket needs an authenticated caller
        assert client.post("/api/v1/live/tickets", json={}).status_code == 401

    async def scenario():
        url = _ws(mesh, f"/ws/calls?ticket={ticket['ticket']}")
        async with connect(url) as ws:
            state = json.loads(await ws.recv())
            assert state["type"] == "state" and state["payload"] == {"active_calls": []}
        with pytest.raises(InvalidStatus) as refused:  # single use
            async with connect(url):
                pass
        assert refused.value.response.status_code == 401
    asyncio.run(scenario())


def test_a_socket_closes_when_its_token_is_revoked(mesh, tenant):
    """Logging out revokes the session's access tokens: a socket opened with one is closed
    (4401) within about a poll of the revocation list, as a REST call with it would be refused;
    a new socket with the token is refused before the upgrade."""
    with mesh.client() as client:
        session = client.post("/api/v1/auth/login", json={"email": tenant.email,
                                                          "password": tenant.password}).json()
    token = session["access_token"]

    async def scenario():
        async with connect(_ws(mesh, "/ws/executions"), additional_headers=_auth(token)) as ws:
            assert json.loads(await ws.recv())["type"] == "state"
            with mesh.client(token) as client:
                out = client.post("/api/v1/auth/logout",
                                  json={"refresh_token": session["refresh_token"]})
                assert out.status_code == 200, out.text
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(_read_until(ws, lambda m: False), 15)
            assert closed.value.rcvd.code == 4401
        with pytest.raises(InvalidStatus) as refused:
            async with connect(_ws(mesh, "/ws/executions"), additional_headers=_auth(token)):
                pass
        assert refused.value.response.status_code == 401
    asyncio.run(scenario())


# ---- over NATS JetStream ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def nats_mesh(tmp_path_factory):
    running = start_mesh(tmp_path_factory.mktemp("nats-mesh"),
                         extra_env={"AGENTMESH_NATS_URL": NATS_URL,
                                    # a client that takes nothing for 2 s is dropped
                                    "AGENTMESH_LIVE_SEND_TIMEOUT_SECONDS": "2"})
    yield running
    stop_mesh(running)


def _services_rss_kib(mesh) -> int:
    """Resident memory of the process serving every service (the supervisor's Python child)."""
    total = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
            cmdline = (status.parent / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        if fields.get("PPid", "").strip() == str(mesh.process.pid) and b"serve" in cmdline:
            total += int(fields["VmRSS"].split()[0])
    return total


def test_slow_consumer_dropped_with_a_close_code(nats_mesh):
    import nats

    tenant = register(nats_mesh)
    execution_id = str(uuid.uuid4())
    payload = "x" * 100_000

    async def scenario():
        # max_queue=1: the client library stops reading from the socket, as a stuck browser
        # tab would; TCP, Envoy and then the live service's bounded queue fill up.
        async with connect(_ws(nats_mesh, "/ws/executions"), max_queue=1,
                           additional_headers=_auth(tenant.token)) as ws:
            assert json.loads(await ws.recv())["type"] == "state"
            rss_before = _services_rss_kib(nats_mesh)
            bus = await nats.connect(NATS_URL)
            sent = 600  # 60 MB: more than TCP's and Envoy's buffers and the queue hold
            for index in range(sent):
                body = {"tenant_id": tenant.tenant_id, "kind": "execution", "key": execution_id,
                        "type": "execution.progress",
                        "payload": {"execution_id": execution_id, "event_id": index + 1,
                                    "status": "EXECUTION_STATUS_RUNNING", "filler": payload}}
                await bus.publish(f"agentmesh.events.{tenant.tenant_id}.execution.{execution_id}",
                                  json.dumps(body).encode())
            await bus.flush()
            await bus.close()
            await asyncio.sleep(6)  # past the 2 s the live service waits for a stuck client
            rss_after = _services_rss_kib(nats_mesh)
            received = []
            with pytest.raises(ConnectionClosed):
                while True:
                    received.append(json.loads(await asyncio.wait_for(ws.recv(), 30)))
            return ws.close_code, ws.close_reason, received, rss_before, rss_after, sent

    code, reason, received, rss_before, rss_after, sent = asyncio.run(scenario())
    assert code == 4008, (code, reason)
    assert "after=" in reason
    assert 0 < len(received) < sent
    ids = [m["payload"]["event_id"] for m in received]
    assert ids == list(range(1, len(ids) + 1))  # what it got is in order, without holes
    # The 60 MB sent to the dropped socket did not pile up in the server.
    assert rss_after - rss_before < 24 * 1024, (rss_before, rss_after)


def test_the_browser_example_works_as_written(mesh, tenant):
    """docs/live-events.md's page, step by step as a browser runs it when the file is opened
    (origin `null`) or served by another site: its URLs are the gateway's, the form calls
    watch(), the ticket request passes CORS, the socket opens with the ticket and shows the
    state, and the text `ping` gets `pong`."""
    import re

    doc = (Path(__file__).resolve().parents[2] / "docs" / "live-events.md").read_text()
    start = doc.index("```html\n") + len("```html\n")
    html = doc[start:doc.index("```", start)]
    script = html[html.index("<script>"):html.index("</script>")]
    assert re.search(r'const MESH = "http://[^"]+";', script)
    assert re.findall(r"fetch\(`([^`]+)`", script) == ["${MESH}/api/v1/live/tickets"]
    assert re.findall(r"new WebSocket\(`([^`]+)`", script) == [
        "${WS}/ws/${executionId}?ticket=${ticket}${after}"]
    assert re.search(r"^\s+watch\(form\.get\(\"execution\"\), form\.get\(\"token\"\)\);", script,
                     re.M), "the page never calls watch()"
    for element in re.findall(r'querySelector\("#(\w+)"\)', script):
        assert f'id="{element}"' in html, element
    with mesh.client(tenant.token) as client:
        execution = _approval_flow(client)  # waits for a person: the socket stays open

    async def page(origin: str) -> list:
        async with httpx2.AsyncClient(base_url=mesh.url, timeout=30) as browser:
            preflight = await browser.options("/api/v1/live/tickets", headers={
                "Origin": origin, "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type"})
            assert preflight.status_code == 200, preflight.text
            assert preflight.headers["access-control-allow-origin"] == origin
            assert "authorization" in preflight.headers["access-control-allow-headers"]
            reply = await browser.post("/api/v1/live/tickets", content="{}", headers={
                "Origin": origin, "Authorization": f"Bearer {tenant.token}",
                "Content-Type": "application/json"})
            assert reply.status_code == 200, reply.text
            assert reply.headers["access-control-allow-origin"] == origin  # readable by the page
            ticket = reply.json()["ticket"]
        url = _ws(mesh, f"/ws/{execution['id']}?ticket={ticket}")
        async with connect(url, origin=origin) as socket:
            state = json.loads(await asyncio.wait_for(socket.recv(), 30))
            await socket.send("ping")
            # The execution may still be on its way to the approval: its progress events come
            # in between, as the page shows them; the answer to `ping` follows.
            while (pong := await asyncio.wait_for(socket.recv(), 30)).startswith("{"):
                assert json.loads(pong)["type"] == "execution.progress", pong
        return [state, pong]

    for origin in ("null", "http://localhost:3000"):
        state, pong = asyncio.run(page(origin))
        assert state["type"] == "state" and "progress" in state["payload"], state
        assert state["payload"]["status"] or state["payload"]["current_phase"]
        assert pong == "pong"
