"""Platform events for the tenants' webhooks (docs/integration.md): a service where something
happened (workflows: an execution ended; agents: a call failed) tells the integration service,
which owns the subscriptions and delivers them signed and retried.

    platform_events.emit(runtime.peers, tenant_id, "execution.finished", {...})

Sent in the background and never awaited by the operation that caused it: a slow or absent
integration service delays nothing and fails nothing (the event is logged and dropped).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from mesh.runtime.context import TENANT_HEADER

log = logging.getLogger("mesh.runtime.platform_events")
_pending: set[asyncio.Task] = set()


def emit(peers, tenant_id: str, event: str, data: dict[str, Any]) -> None:
    """Schedules `event` for the tenant's webhooks; returns at once."""
    task = asyncio.get_running_loop().create_task(_send(peers, tenant_id, event, data))
    _pending.add(task)  # kept until done, so it is not collected mid-flight
    task.add_done_callback(_pending.discard)


async def _send(peers, tenant_id: str, event: str, data: dict[str, Any]) -> None:
    from google.protobuf import struct_pb2

    from agentmesh.integration.v1 import integration_pb2 as pb
    from agentmesh.integration.v1 import integration_pb2_grpc as pb_grpc

    body = struct_pb2.Struct()
    body.update(data)
    try:
        stub = peers.stub(pb_grpc.IntegrationServiceStub)
        await stub.PublishPlatformEvent(pb.PublishPlatformEventRequest(event=event, data=body),
                                        metadata=[(TENANT_HEADER, tenant_id)], timeout=5)
    except Exception as exc:  # noqa: BLE001 - an event never fails what caused it
        log.warning("platform event %s of tenant %s not delivered to integration: %s",
                    event, tenant_id, exc)
