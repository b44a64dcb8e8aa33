"""Platform events for the tenants' webhooks (docs/integration.md): a service where something
happened (workflows: an execution ended; agents: a call failed) tells the integration service,
which owns the subscriptions and delivers them signed and retried.

    platform_events.emit(runtime.peers, tenant_id, "execution.finished", {...})

Sent in the background and never awaited by the operation that caused it: a slow or absent
integration service delays nothing and fails nothing. While integration cannot be reached
(UNAVAILABLE: it is restarting, or a pod is being replaced; the call almost always never
reached it) the event is tried again with backoff for about half a minute. A call that reached
it and failed otherwise is not repeated, since it may have been queued. After that the event is
logged and dropped.
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


# Waits between attempts while integration is UNAVAILABLE: about 30 s in all.
RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0)


async def _send(peers, tenant_id: str, event: str, data: dict[str, Any],
                delays: tuple[float, ...] = RETRY_DELAYS) -> bool:
    import grpc
    from google.protobuf import struct_pb2

    from agentmesh.integration.v1 import integration_pb2 as pb
    from agentmesh.integration.v1 import integration_pb2_grpc as pb_grpc

    body = struct_pb2.Struct()
    body.update(data)
    request = pb.PublishPlatformEventRequest(event=event, data=body)
    for attempt, delay in enumerate((*delays, None), start=1):
        try:
            stub = peers.stub(pb_grpc.IntegrationServiceStub)
            await stub.PublishPlatformEvent(request, metadata=[(TENANT_HEADER, tenant_id)],
                                            timeout=5)
            return True
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE and delay is not None:
                await asyncio.sleep(delay)
                continue
            reason = f"{exc.code().name}: {exc.details()}"
        except Exception as exc:  # noqa: BLE001 - an event never fails what caused it
            reason = f"{type(exc).__name__}: {exc}"
        log.warning("platform event %s of tenant %s not delivered to integration after %d "
                    "attempts: %s", event, tenant_id, attempt, reason)
        return False
    raise AssertionError("unreachable: the last attempt returns")
