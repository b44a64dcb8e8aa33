"""Platform events reach integration even when it is restarting: a real gRPC server that
comes up on the peer address only after the first attempts failed with UNAVAILABLE."""

from __future__ import annotations

import asyncio
import socket

import grpc

from agentmesh.integration.v1 import integration_pb2 as pb
from agentmesh.integration.v1 import integration_pb2_grpc as pb_grpc
from mesh.runtime import platform_events
from mesh.runtime.peers import Peers
from mesh.runtime.settings import Settings


class _Integration(pb_grpc.IntegrationServiceServicer):
    def __init__(self) -> None:
        self.received: list[tuple[str, str, dict]] = []

    async def PublishPlatformEvent(self, request, context):  # noqa: N802 - gRPC name
        tenant = dict(context.invocation_metadata())["x-agentmesh-tenant-id"]
        self.received.append((tenant, request.event, dict(request.data)))
        return pb.PublishPlatformEventResponse(deliveries=1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_event_waits_for_an_integration_service_that_is_restarting():
    port = _free_port()

    async def scenario():
        peers = Peers(Settings(peers=f"integration=127.0.0.1:{port}"))
        integration = _Integration()
        server = grpc.aio.server()
        pb_grpc.add_IntegrationServiceServicer_to_server(integration, server)

        async def come_up_late():
            await asyncio.sleep(0.6)  # after the first two attempts
            server.add_insecure_port(f"127.0.0.1:{port}")
            await server.start()

        starting = asyncio.create_task(come_up_late())
        sent = await platform_events._send(peers, "t1", "execution.finished", {"n": 1},
                                           delays=(0.2, 0.2, 0.4, 0.8, 1.6))
        await starting
        await server.stop(0)
        await peers.close()
        return sent, integration.received

    sent, received = asyncio.run(scenario())
    assert sent and received == [("t1", "execution.finished", {"n": 1.0})]


def test_an_event_is_dropped_when_integration_never_comes_back():
    port = _free_port()

    async def scenario():
        peers = Peers(Settings(peers=f"integration=127.0.0.1:{port}"))
        try:
            return await platform_events._send(peers, "t1", "call.failed", {},
                                               delays=(0.05, 0.05))
        finally:
            await peers.close()

    assert asyncio.run(scenario()) is False
