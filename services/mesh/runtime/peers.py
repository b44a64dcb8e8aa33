"""Calls to other services: one lazily made channel per peer, a deadline on every call, retries
of UNAVAILABLE for idempotent methods only, the caller's identity and correlation id passed on,
channels closed at shutdown.

    agents = runtime.peers.stub(agents_pb2_grpc.AgentServiceStub)
    agent = await agents.GetAgent(agents_pb2.GetAgentRequest(agent_id=key))

Addresses come from one setting, `AGENTMESH_PEERS=service=host:port,...`, written by
`agentmesh up` for local runs and by the Helm chart (`service=agentmesh-service:50051`) in
Kubernetes. Retries are a gRPC service config derived from the contract: an RPC is idempotent
when it is bound to HTTP GET (reads) — those are retried on UNAVAILABLE, as googleapis service
configs declare it; nothing else is retried, because a retried create or execute could happen
twice.

Deadlines propagate: a call made while serving a call gets what is left of that call's deadline
(or less, when it asks for less), as gRPC's own deadline propagation does; only a call with no
deadline to inherit (a background task, a caller that set none) gets the default, 10 s, or
15 minutes for the contract's effect RPCs (running a tool, an agent's conversation).

With `AGENTMESH_TLS_CA_FILE` set, channels are TLS, checked against that CA (mesh.runtime.tls).

A service this process itself serves at the peer list's address (`agentmesh up`: every service
in one process) is called in-process, with the same metadata, deadline and errors
(mesh.runtime.local).
"""

from __future__ import annotations

import asyncio
import functools
import json
from typing import Any, TypeVar

import grpc

from mesh.runtime.context import (API_KEY_HEADER, CORRELATION_HEADER, SCOPES_HEADER,
                                  TENANT_HEADER, USER_HEADER, call_metadata, current_call)
from mesh.runtime import internal, local, tls
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
def effect_methods() -> frozenset[bytes]:
    """The gRPC paths of the contract's effect RPCs, which wait up to EFFECT_DEADLINE_SECONDS."""
    from mesh import contract

    return frozenset(r.grpc_path.encode() for r in contract.default().rpcs if r.effect)


def default_deadline(method: bytes | str) -> float:
    method = method.encode() if isinstance(method, str) else method
    return EFFECT_DEADLINE_SECONDS if method in effect_methods() else DEFAULT_DEADLINE_SECONDS


def time_left() -> float | None:
    """Seconds left of the deadline of the call being served; None without one (or outside a
    call)."""
    context = current_call.get()
    if context is None:
        return None
    try:
        left = context.time_remaining()
    except (AttributeError, RuntimeError):
        return None
    return None if left is None else max(0.0, left)


def call_deadline(method: bytes | str, asked: float | None) -> float:
    """The timeout of an outgoing call: what its caller asked for, never past what is left of
    the served call's deadline, and the method's default when neither says."""
    left = time_left()
    if left is not None:
        return left if asked is None else min(asked, left)
    return default_deadline(method) if asked is None else asked


@functools.cache
def service_config(backend: str) -> str:
    """The gRPC service config for the channel to one backend, from the contract: round robin
    and the retry policy of reads (deadlines are set per call: `call_deadline`)."""
    from mesh import contract

    rpcs = [r for r in contract.default().rpcs if r.backend == backend]
    idempotent = [{"service": r.full_service, "method": r.name} for r in rpcs
                  if any(b.method == "GET" for b in r.bindings) and not r.server_streaming]
    configs: list[dict[str, Any]] = []
    if idempotent:
        configs.append({"name": idempotent, "retryPolicy": {
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

    def metadata(self, given) -> list[tuple[str, Any]]:
        """A call's metadata: what the caller gave, the served call's identity and trace
        (`outgoing_metadata`) where it gave none, the internal token."""
        metadata = list(given or ())
        present = {k for k, _ in metadata}
        metadata.extend(item for item in outgoing_metadata() if item[0] not in present)
        metadata.extend(self.token)
        return metadata

    async def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        return details._replace(metadata=grpc.aio.Metadata(*self.metadata(details.metadata)),
                                timeout=call_deadline(details.method, details.timeout))

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
        # A stub builds a callable per method of its service (thirty for governance's):
        # made once per class, not per call.
        self._stubs: dict[tuple[type, bool], Any] = {}
        self._pass_on: _PassOn | None = None

    def address(self, service: str) -> str:
        try:
            return self.addresses[service]
        except KeyError:
            raise Unavailable(f"no address for service {service!r}; set AGENTMESH_PEERS",
                              reason="PEER_NOT_CONFIGURED", details={"service": service}) from None

    def _hosted(self, service: str) -> dict | None:
        """The handlers of `service` when this process serves it where the peer list says
        (mesh.runtime.local), unless AGENTMESH_LOCAL_CALLS=false."""
        if not self.settings.local_calls:
            return None
        return local.hosted(service, self.address(service))

    def receiver(self, service: str, name: str):
        """What `service` takes as `name` without a call when this process serves it on the
        running loop (mesh.runtime.local.receiver), unless AGENTMESH_LOCAL_CALLS=false; else
        None."""
        if not self.settings.local_calls:
            return None
        found = local.receiver(self.address(service), name)
        if found is None or found[0] is not asyncio.get_running_loop():
            return None
        return found[1]

    def _network(self, service: str) -> grpc.aio.Channel:
        channel = self._channels.get(service)
        if channel is None:
            if self._pass_on is None:
                self._pass_on = _PassOn(internal.token(self.settings))
            channel = self._channels[service] = tls.channel(
                self.settings, replicas_target(self.address(service)),
                interceptors=[self._pass_on],
                options=[("grpc.service_config", service_config(service)),
                         ("grpc.enable_retries", 1)])
        return channel

    def channel(self, service: str) -> grpc.aio.Channel:
        """The channel to `service`: in-process (`local.LocalChannel`) when this process
        serves it at its address, else gRPC. Asked each time, so a service that starts (or
        stops) serving here after the first call is called the right way from then on."""
        methods = self._hosted(service)
        if methods is None:
            return self._network(service)
        key = f"{service}:local"
        channel = self._channels.get(key)
        if channel is None:
            if self._pass_on is None:
                self._pass_on = _PassOn(internal.token(self.settings))
            channel = self._channels[key] = local.LocalChannel(
                methods, functools.partial(self._network, service), self._pass_on.metadata,
                call_deadline)
        return channel

    def stub(self, stub_class: type[S]) -> S:
        """A stub of the generated module `agentmesh.<service>.v1.*_pb2_grpc`."""
        service = stub_class.__module__.split(".")[1]
        key = (stub_class, self._hosted(service) is not None)
        stub = self._stubs.get(key)
        if stub is None:
            stub = self._stubs[key] = stub_class(self.channel(service))
        return stub

    async def close(self) -> None:
        self._stubs = {}
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            await channel.close()
