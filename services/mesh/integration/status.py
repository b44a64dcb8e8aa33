"""The integration's status: the health of the services it composes, and the tenant's webhooks,
connections and last sync, import and export."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agentmesh.integration.v1 import integration_pb2 as pb
from mesh.integration.store import counts
from mesh.runtime import errors
from mesh.runtime.context import Caller
from mesh.runtime.peers import Peers
from mesh.runtime.tables import utcnow

if TYPE_CHECKING:
    from mesh.integration.state import IntegrationState

DEPENDENCIES = ("agents", "workflows", "tools", "templates", "masterdata")


async def _health(peers: Peers, service: str) -> pb.DependencyStatus:
    started = time.perf_counter()
    try:
        stub = health_pb2_grpc.HealthStub(peers.channel(service))
        answer = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
        ok = answer.status == health_pb2.HealthCheckResponse.SERVING
    except (grpc.aio.AioRpcError, errors.DomainError):
        ok = False
    return pb.DependencyStatus(name=service, status="healthy" if ok else "unhealthy",
                               latency_ms=round((time.perf_counter() - started) * 1000, 3))


async def status(state: "IntegrationState", caller: Caller) -> pb.IntegrationStatus:
    services = await asyncio.gather(*(_health(state.peers, s) for s in DEPENDENCIES))
    active, connections, seen = await state.db.read(lambda s: counts(s, caller.tenant_id))
    healthy = all(s.status == "healthy" for s in services)
    return pb.IntegrationStatus(
        status="healthy" if healthy else "degraded", services=services,
        active_webhooks=active, api_connections=connections, last_sync_at=seen.get("sync"),
        last_import_at=seen.get("import"), last_export_at=seen.get("export"),
        timestamp=utcnow())
