"""The integration service alone (the harness, SQLite): webhooks and API connections with their
checks, bundle validation that lists every problem, OpenAPI documents turned into tools, and the
webhook delivery recorded in the history (a real local HTTP server, the runtime's sender)."""

from __future__ import annotations

import time
import uuid

import grpc
import pytest
from google.protobuf import struct_pb2

from agentmesh.integration.v1 import integration_pb2 as pb
from agentmesh.integration.v1 import integration_pb2_grpc as pb_grpc
from mesh.integration import bundle, openapi_tools
from mesh.integration.documents import parse_document
from mesh.integration.service import DEFINITION
from mesh.runtime import errors
from tests.fakes.http_server import LocalHTTPServer
from tests.harness import Identity, error_reason, field_violations, harness_fixture


harness = harness_fixture(DEFINITION, egress_allow="127.0.0.1")


@pytest.fixture
def stub(harness):
    return harness.stub(pb_grpc.IntegrationServiceStub)


def _name(prefix="x"):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_webhook_create_list_delete_and_checks(stub, me):
    name = _name("hook")
    made = stub.CreateWebhook(pb.CreateWebhookRequest(webhook=pb.Webhook(
        name=name, url="http://127.0.0.1:9/h", events=["agent.*"])), metadata=me.metadata())
    assert made.secret == "" and made.secret_hint.startswith("****") and made.active
    with pytest.raises(grpc.RpcError) as err:
        stub.CreateWebhook(pb.CreateWebhookRequest(webhook=pb.Webhook(
            name=name, url="http://127.0.0.1:9/h")), metadata=me.metadata())
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(grpc.RpcError) as err:
        stub.CreateWebhook(pb.CreateWebhookRequest(webhook=pb.Webhook(
            name=_name(), url="http://127.0.0.1:9/h", events=["nope.event"])),
            metadata=me.metadata())
    assert field_violations(err.value) == ["events[0]"]
    with pytest.raises(grpc.RpcError) as err:
        stub.CreateWebhook(pb.CreateWebhookRequest(webhook=pb.Webhook(
            name=_name(), url="http://10.0.0.1/h")), metadata=me.metadata())
    assert error_reason(err.value) == "EGRESS_DENIED"
    listed = stub.ListWebhooks(pb.ListWebhooksRequest(event="agent.deployed"),
                               metadata=me.metadata())
    assert [w.name for w in listed.items] == [name]
    assert stub.ListWebhooks(pb.ListWebhooksRequest(), metadata=Identity().metadata()).total == 0
    stub.DeleteWebhook(pb.DeleteWebhookRequest(webhook_id=name), metadata=me.metadata())
    assert stub.ListWebhooks(pb.ListWebhooksRequest(), metadata=me.metadata()).total == 0


def test_api_connection_checks(stub, me):
    for connection, field in [
        (pb.ApiConnection(name="a", base_url="ftp://x"), "base_url"),
        (pb.ApiConnection(name="a", base_url="https://u:p@x.example.com"),
         "base_url"),
        (pb.ApiConnection(name="a", base_url="https://x.example.com",
                          auth_type=pb.AUTH_TYPE_BEARER), "secret_ref"),
        (pb.ApiConnection(name="a", base_url="https://x.example.com",
                          headers={"Authorization": "Bearer x"}),
         "headers.Authorization"),
    ]:
        with pytest.raises(grpc.RpcError) as err:
            stub.CreateApiConnection(pb.CreateApiConnectionRequest(api_connection=connection),
                                     metadata=me.metadata())
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field_violations(err.value) == [field]


def test_batch_limits(stub, me):
    with pytest.raises(grpc.RpcError) as err:
        stub.BatchCreateAgents(pb.BatchCreateAgentsRequest(), metadata=me.metadata())
    assert field_violations(err.value) == ["agents"]
    many = [struct_pb2.Struct() for _ in range(101)]
    with pytest.raises(grpc.RpcError) as err:
        stub.BatchCreateAgents(pb.BatchCreateAgentsRequest(agents=many), metadata=me.metadata())
    assert "at most 100" in err.value.details()


def _events(harness):
    return harness.running.runtime.state.events


def _deliveries(stub, me, hook, until=lambda items: True, seconds=10.0):
    deadline = time.monotonic() + seconds
    while True:
        items = stub.ListWebhookDeliveries(pb.ListWebhookDeliveriesRequest(webhook_id=hook),
                                           metadata=me.metadata()).items
        if (items and until(items)) or time.monotonic() > deadline:
            return items
        time.sleep(0.05)


def _ended(items):
    return all(i.status != "pending" for i in items)


def test_delivery_is_signed_and_recorded(harness, stub, me):
    server = LocalHTTPServer()
    events = _events(harness)
    events.sender.base_delay, events.sender.max_attempts = 0.01, 3
    try:
        name = _name("hook")
        stub.CreateWebhook(pb.CreateWebhookRequest(webhook=pb.Webhook(
            name=name, url=f"{server.url}/in", secret="s" * 20)), metadata=me.metadata())
        bad = _name("hook")
        stub.CreateWebhook(pb.CreateWebhookRequest(webhook=pb.Webhook(
            name=bad, url=f"{server.url}/fail", events=["data.*"])), metadata=me.metadata())
        assert harness._run(events.publish(me.tenant_id, "data.imported", {"n": 1})) == 2
        done = _deliveries(stub, me, name, _ended)
        failed = _deliveries(stub, me, bad, _ended)
        assert done[0].status == "delivered" and done[0].event == "data.imported"
        assert done[0].attempts == 1 and not done[0].HasField("next_attempt_at")
        assert failed[0].status == "failed" and failed[0].attempts == 3
        assert failed[0].status_code == 500 and failed[0].error == "HTTP 500"
        hits = [r for r in server.requests if r["path"] == "/in"]
        assert len(hits) == 1 and hits[0]["headers"]["X-AgentMesh-Delivery"] == done[0].id
        assert len([r for r in server.requests if r["path"] == "/fail"]) == 3
    finally:
        events.sender.base_delay, events.sender.max_attempts = 1.0, 8
        server.close()


def test_a_pending_delivery_survives_a_restart_and_a_receiver_that_was_down(harness, stub, me):
    """Queued while the receiver is down and its first attempt fails; the sender then stops
    (a restart). A new sender over the same database, as the restarted service has, delivers
    it once the receiver is up, with the same delivery id and body."""
    from mesh.integration.events import Events

    events = _events(harness)
    server = LocalHTTPServer()
    port = int(server.url.rsplit(":", 1)[1])
    server.close()  # nothing listens there now
    name = _name("hook")
    stub.CreateWebhook(pb.CreateWebhookRequest(webhook=pb.Webhook(
        name=name, url=f"http://127.0.0.1:{port}/in", events=["tool.registered"])),
        metadata=me.metadata())
    events.sender.base_delay = 1.5
    try:
        assert harness._run(events.publish(me.tenant_id, "tool.registered", {"n": 7})) == 1
        first = _deliveries(stub, me, name, lambda items: items[0].attempts == 1)
        assert first[0].status == "pending" and first[0].error.startswith("ConnectError")
        assert first[0].HasField("next_attempt_at")
        harness._run(events.close())  # the service stops before the retry
    finally:
        events.sender.base_delay = 1.0
    server = LocalHTTPServer(port=port)
    restarted = Events(harness.running.runtime.database, events.sender.egress, base_delay=0.01)
    try:
        harness._run(_start(restarted))
        done = _deliveries(stub, me, name, _ended)
        assert done[0].status == "delivered" and done[0].attempts == 2
        (hit,) = [r for r in server.requests if r["path"] == "/in"]
        assert hit["headers"]["X-AgentMesh-Delivery"] == done[0].id == first[0].id
        assert hit["body"]["data"] == {"n": 7} and hit["body"]["event"] == "tool.registered"
    finally:
        harness._run(restarted.close())
        harness._run(_start(events))
        server.close()


def test_a_claim_whose_sender_died_is_taken_again_when_its_lease_ends(harness, stub, me):
    """A replica that claimed a delivery and died before recording anything: another replica
    takes the row once the lease ends, and the receiver gets it (once)."""
    from mesh.integration.events import Events

    events = _events(harness)
    server = LocalHTTPServer()
    name = _name("hook")
    stub.CreateWebhook(pb.CreateWebhookRequest(webhook=pb.Webhook(
        name=name, url=f"{server.url}/in", events=["master_data.synced"])),
        metadata=me.metadata())
    harness._run(events.close())  # only the two replicas below send
    db = harness.running.runtime.database
    dead = Events(db, events.sender.egress, lease_seconds=1.0)
    alive = Events(db, events.sender.egress, lease_seconds=1.0, poll_seconds=0.2)
    try:
        assert harness._run(dead.publish(me.tenant_id, "master_data.synced", {"k": 1})) == 1
        (claimed,) = harness._run(db.write(dead.outbox._claim))  # claimed, then the replica dies
        assert claimed[0].webhook_id and not server.requests
        assert harness._run(db.write(alive.outbox._claim)) == []  # leased: not due for the other
        harness._run(_start(alive))
        done = _deliveries(stub, me, name, _ended)
        assert done[0].status == "delivered" and done[0].attempts == 1
        assert len([r for r in server.requests if r["path"] == "/in"]) == 1
    finally:
        harness._run(alive.close())
        harness._run(_start(events))
        server.close()


async def _start(events):
    events.start()


def test_bundle_validation_lists_every_problem():
    problems = bundle.check_shape({
        "version": 1, "agents": [{"name": "a"}, {"name": "a"}, {"name": "b", "tools": "x"}],
        "prompts": [{"name": "p", "versions": [], "labels": {}}],
        "templates": [{"name": "t", "kind": "TEMPLATE_KIND_AGENT",
                       "versions": [{"version": 1, "content": {"a": 1}}],
                       "labels": {"production": 3}}],
        "api_connections": [{"name": "c", "base_url": "nope"}]})
    fields = [f for f, _ in problems.items]
    assert fields == ["prompts[0].versions", "templates[0].labels.production",
                      "agents[1].name", "agents[2]", "api_connections[0].base_url"]
    with pytest.raises(errors.InvalidArgument) as err:
        problems.raise_if_any()
    assert err.value.reason == "BUNDLE_INVALID" and len(err.value.field_violations) == 5
    problems = bundle.Problems()
    bundle.check_against(problems, {"secrets": [{"name": "k", "value": "<fill in>"}],
                                    "workflows": [{"slug": "w", "steps": [
                                        {"id": "s", "agent": {"agent_id": "ghost"}}]}]},
                         {"secrets": set(), "agents": set()})
    assert [f for f, _ in problems.items] == ["secrets[0].value",
                                             "workflows[0].steps.agent.agent_id"]


def test_bundle_validation_of_versions_labels_and_the_governance_sections():
    problems = bundle.check_shape({
        "version": 1,
        "agents": [{"name": "a", "versions": [{"version": 1, "name": "a", "tools": "x"}],
                    "version_labels": {"production": 2}},
                   {"name": "b"}],   # without versions: created as it is
        "workflows": [{"slug": "w", "name": "W", "schedules": [{"cron": 5}]}],
        "policies": [{"name": "p", "cedar": "permit(principal, action, resource);",
                      "versions": [{"version": 1, "cedar": "x", "effect": "deny"}],
                      "version_labels": {"production": 1}}],
        "alert_rules": [{"name": "Too many errors", "condition": {}}, {"name": "   "}],
        "budgets": [{"name": "tenant", "tokens_per_day": 5}, {"name": "agent"}],
        "decision_webhooks": [{"url": "ftp://x"}],
        "webhooks": [{"name": "h", "url": "https://h.example.com", "secret": "short"},
                     {"name": "i", "url": "https://i.example.com", "secret": "<fill in>"}]})
    assert [f for f, _ in problems.items] == [
        "agents[0].versions[0]", "agents[0].version_labels.production",
        "workflows[0].schedules[0]", "policies[0].versions[0].effect",
        "alert_rules[1].name", "budgets[1].name", "decision_webhooks[0].url",
        "webhooks[0].secret"]


def test_references_in_versions_are_rewritten_by_name():
    entity = {"tools": ["t1"], "versions": [{"version": 1, "tools": ["t1", "t2"]}]}
    bundle.rewrite_references("agents", entity, {"tools": {"t1": "t1-2"}})
    assert entity == {"tools": ["t1-2"], "versions": [{"version": 1, "tools": ["t1-2", "t2"]}]}


def test_references_are_rewritten_by_name():
    entity = {"tools": ["t1", "t2"], "prompt_id": "p", "model": "gpt-4o"}
    bundle.rewrite_references("agents", entity, {"tools": {"t1": "t1-2"}, "prompts": {"p": "q"}})
    assert entity == {"tools": ["t1-2", "t2"], "prompt_id": "q", "model": "gpt-4o"}


def test_openapi_operations_become_tools():
    document = {"openapi": "3.1.0", "servers": [{"url": "https://api.example.com/v1"}],
                "components": {"schemas": {"Pet": {"type": "object", "required": ["name"],
                                                   "properties": {"name": {"type": "string"}}}}},
                "paths": {"/pets/{id}": {
                    "parameters": [{"name": "id", "in": "path", "schema": {"type": "integer"}}],
                    "get": {"summary": "a pet"},
                    "put": {"operationId": "updatePet", "requestBody": {"content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Pet"}}}}}}}}
    tools = openapi_tools.tools_from_openapi(document, prefix="pets")
    assert [(t["name"], t["method"], t["url"]) for t in tools] == [
        ("pets.get_pets_id", "GET", "https://api.example.com/v1/pets/{id}"),
        ("pets.updatePet", "PUT", "https://api.example.com/v1/pets/{id}")]
    assert tools[1]["input_schema"]["required"] == ["id", "name"]
    for bad in ({}, {"openapi": "2.0"}, {"openapi": "3.0.0", "paths": {}},
                {"openapi": "3.0.0", "paths": {"/a": {"get": {}}}},
                {"openapi": "3.0.0", "servers": [{"url": "https://x"}], "paths": {"/a": {"get": {
                    "parameters": [{"$ref": "https://elsewhere/x"}]}}}}):
        with pytest.raises(errors.InvalidArgument):
            openapi_tools.tools_from_openapi(bad, prefix="p")


def test_documents_parse_as_json_or_yaml_and_refuse_aliases():
    assert parse_document(b'{"a": 1}', "f") == {"a": 1}
    assert parse_document(b"a: 1\nb: [x]\n", "f") == {"a": 1, "b": ["x"]}
    for raw in (b"", b"a: &x [1]\nb: *x\n", b"\xff\xfe", b"a: [", b"x" * (1024 * 1024 + 1)):
        with pytest.raises(errors.InvalidArgument):
            parse_document(raw, "f")
