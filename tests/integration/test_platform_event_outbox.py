"""Platform events leave a service through its outbox (mesh.runtime.platform_events, issue 25):
queued in the service's database, handed to integration at least once (nothing is lost while
integration cannot be reached), and queued by integration once per event id and webhook."""

from __future__ import annotations

import asyncio
import uuid
from importlib import resources
from pathlib import Path

from agentmesh.integration.v1 import integration_pb2 as pb
from agentmesh.integration.v1 import integration_pb2_grpc as pb_grpc
from mesh.integration.service import DEFINITION
from mesh.runtime import platform_events
from mesh.runtime.db import Database
from mesh.runtime.peers import Peers
from mesh.runtime.settings import Settings
from tests.harness import Identity, harness_fixture

harness = harness_fixture(DEFINITION, egress_allow="127.0.0.1", internal_token="events-token")


def _deliveries(stub, me, hook) -> int:
    return stub.ListWebhookDeliveries(pb.ListWebhookDeliveriesRequest(webhook_id=hook.id),
                                      metadata=me.metadata()).total


def test_an_event_sent_again_is_queued_once_per_webhook(harness):
    me = Identity()
    stub = harness.stub(pb_grpc.IntegrationServiceStub)
    hook = stub.CreateWebhook(pb.CreateWebhookRequest(webhook=pb.Webhook(
        name=f"h-{uuid.uuid4().hex[:6]}", url="http://127.0.0.1:9/h", events=["call.failed"])),
        metadata=me.metadata())
    event_id = str(uuid.uuid4())
    request = pb.PublishPlatformEventRequest(event="call.failed", event_id=event_id)
    request.data.update({"id": "call-1"})
    assert stub.PublishPlatformEvent(request, metadata=me.metadata()).deliveries == 1
    assert stub.PublishPlatformEvent(request, metadata=me.metadata()).deliveries == 0
    assert _deliveries(stub, me, hook) == 1


def test_queued_events_wait_for_integration_and_are_sent_once(harness, tmp_path: Path):
    me = Identity()
    stub = harness.stub(pb_grpc.IntegrationServiceStub)
    hook = stub.CreateWebhook(pb.CreateWebhookRequest(webhook=pb.Webhook(
        name=f"h-{uuid.uuid4().hex[:6]}", url="http://127.0.0.1:9/h",
        events=["execution.finished"])), metadata=me.metadata())
    db = Database.for_service("workflows", Settings(data_dir=tmp_path))
    db.migrate([Path(str(resources.files("mesh.runtime") / "migrations"))])

    async def scenario() -> tuple[int, int]:
        down = Peers(Settings(data_dir=tmp_path, internal_token="events-token",
                              peers="integration=127.0.0.1:1"))
        await platform_events.record(db, me.tenant_id, "execution.finished", {"id": "e-1"})
        away = platform_events.Sender(db, down, lease_seconds=0)
        await away.send_once()  # integration unreachable: still queued
        await down.close()
        up = Peers(Settings(data_dir=tmp_path, internal_token="events-token",
                            peers=f"integration=127.0.0.1:{harness.running.port}"))
        sender = platform_events.Sender(db, up, lease_seconds=0)
        first = await sender.send_once()
        again = await sender.send_once()  # nothing left
        await up.close()
        return first, again

    before = _deliveries(stub, me, hook)
    first, again = asyncio.run(scenario())
    assert before == 0 and first == 1 and again == 0
    assert _deliveries(stub, me, hook) == 1
    db.close()
