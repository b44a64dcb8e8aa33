"""Calls to other services: one lazily made channel per peer, a deadline on every call, retries
of UNAVAILABLE for idempotent methods only, the caller's identity and correlation id passed on,
channels closed at shutdown.

    agents = runtime.peers.stub(agents_pb2_grpc.AgentServiceStub)
    agent = await agents.GetAgent(agents_pb2.GetAgentRequest(agent_id=key))

Addresses come from one setting, `AGENTMESH_PEERS=service=host:port,...`, written by
`agentmesh up` for local runs and by the Helm chart (`service=agentmesh-service:50051`) in
Kubernetes. Deadlines and retries are a gRPC service config derived from the contract: an RPC is
idempotent when it is bound to HTTP GET (reads) — those are retried on UNAVAILABLE, as
googleapis service configs declare it; nothing else is retried, because a retried create or
execute could happen twice.
"""

from __future__ import annotations

import functools
import json
from typing import Any, TypeVar

import grpc

from mesh.runtime.context import (API_KEY_HEADER, CORRELATION_HEADER, SCOPES_HEADER,
                                  TENANT_HEADER, USER_HEADER, call_metadata, current_call)
from mesh.runtime import internal
from mesh.runtime.errors import Unavailable
from mesh.runtime.settings import Settings
from mesh.runtime.telemetry import TRACEPARENT, TRACESTATE, current_traceparent

S = TypeVar("S")
DEFAULT_DEADLINE_SECONDS = 10.0
# Running a tool or an agent's conversation (RPCs marked `idempotent` in the contract) is bounded
# by the tool's timeout or the agent's constraints, which may be minutes: the call waits for them.
EFFECT_DEADLINE_SECONDS = 900.0
_PASSED_ON = (TENANT_HEADER, USER_HEADER, SCOPES_HEADER, API_KEY_HEADER, CORRELATION_HEADER)


@functools.cache
def service_config(backend: str, deadline: float = DEFAULT_DEADLINE_SECONDS) -> str:
    """The gRPC service config for the channel to one backend, from the contract."""
    from mesh import contract

    rpcs = [r for r in contract.default().rpcs if r.backend == backend]
    idempotent = [{"service": r.full_service, "method": r.name} for r in rpcs
                  if any(b.method == "GET" for b in r.bindings) and not r.server_streaming]
    services = sorted({r.full_service for r in rpcs})
    timeout = f"{deadline:g}s"
    configs: list[dict[str, Any]] = [{"name": [{"service": s} for s in services], "timeout": timeout}]
    effects = [{"service": r.full_service, "method": r.name} for r in rpcs if r.effect]
    if effects:
        configs.append({"name": effects, "timeout": f"{EFFECT_DEADLINE_SECONDS:g}s"})
    if idempotent:
        configs.append({"name": idempotent, "timeout": timeout, "retryPolicy": {
            "maxAttempts": 4, "initialBackoff": "0.1s", "maxBackoff": "1s",
            "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}})
    # Round robin: calls spread over every address the name resolves to (a headless Service's
    # pods in Kubernetes, or the replicas `agentmesh up --replicas` lists).
    return json.dumps({"loadBalancingConfig": [{"round_robin": {}}], "methodConfig": configs})


def outgoing_metadata() -> list[tuple[str, str]]:
    """The identity, correlation id and trace context of the call being served, for a call it
    makes."""
    context = current_call.get()
    if context is None:  # background work (a workflow step): only its span's trace, if any
        traceparent = current_traceparent.get()
        return [(TRACEPARENT, traceparent)] if traceparent else []
    incoming = call_metadata(context)
    metadata = [(k, v) for k, v in incoming.items() if k in _PASSED_ON]
    traceparent = current_traceparent.get()
    if traceparent:  # a traced call: its span is the parent, the vendors' trace state goes on
        metadata.append((TRACEPARENT, traceparent))
        if incoming.get(TRACESTATE):
            metadata.append((TRACESTATE, incoming[TRACESTATE]))
    return metadata


class _PassOn(grpc.aio.UnaryUnaryClientInterceptor, grpc.aio.UnaryStreamClientInterceptor):
    def __init__(self, internal_token: str) -> None:
        # Presented on every call: internal RPCs require it (mesh.runtime.server), the others
        # ignore it. The gateway strips a client-sent copy.
        self.token = ((internal.HEADER, internal_token),) if internal_token else ()

    async def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = list(details.metadata or ())
        present = {k for k, _ in metadata}
        metadata.extend(item for item in outgoing_metadata() if item[0] not in present)
        metadata.extend(self.token)
        return details._replace(metadata=grpc.aio.Metadata(*metadata))

    async def intercept_unary_unary(self, continuation, details, request):
        return await continuation(await self._details(details), request)

    async def intercept_unary_stream(self, continuation, details, request):
        return await continuation(await self._details(details), request)


def replicas_target(address: str) -> str:
    """`host:p1|host:p2` (several replicas, as `agentmesh up --replicas` writes it) becomes one
    gRPC target over every address (IP literals), balanced per call by the service config's
    round robin; a dead replica's calls move to the others. One address stays as it is (in
    Kubernetes, a headless Service name that resolves to every pod)."""
    return "ipv4:" + ",".join(address.split("|")) if "|" in address else address


class Peers:
    """The channels of one service to the others."""

    def __init__(self, settings: Settings) -> None:
        self.addresses = settings.peer_addresses
        self.settings = settings
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._pass_on: _PassOn | None = None

    def address(self, service: str) -> str:
        try:
            return self.addresses[service]
        except KeyError:
            raise Unavailable(f"no address for service {service!r}; set AGENTMESH_PEERS",
                              reason="PEER_NOT_CONFIGURED", details={"service": service}) from None

    def channel(self, service: str) -> grpc.aio.Channel:
        channel = self._channels.get(service)
        if channel is None:
            if self._pass_on is None:
                self._pass_on = _PassOn(internal.token(self.settings))
            channel = self._channels[service] = grpc.aio.insecure_channel(
                replicas_target(self.address(service)), interceptors=[self._pass_on],
                options=[("grpc.service_config", service_config(service)),
                         ("grpc.enable_retries", 1)])
        return channel

    def stub(self, stub_class: type[S]) -> S:
        """A stub of the generated module `agentmesh.<service>.v1.*_pb2_grpc`."""
        service = stub_class.__module__.split(".")[1]
        return stub_class(self.channel(service))

    async def close(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            await channel.close()
