"""One gRPC server per service: health, reflection, error mapping, traces, graceful shutdown. A service supplies a `ServiceDefinition`; this module does the rest.
Traces: see `mesh.runtime.telemetry` (a span only for calls the gateway sampled, made here in
the wrapper rather than by an interceptor, for the reason below).

Error mapping and the call context are applied by wrapping each servicer method once, when the
server is built, rather than by a server interceptor: an interceptor runs per call and builds a
new handler per call, which on a sub-millisecond read was a measurable share of the CPU.

`serve_many` runs several services in one process, each still its own server, port, database
and health (the embedded shape of `agentmesh up`); `serve` runs one (the shape of a pod).
"""

from __future__ import annotations

import asyncio
import functools
import gc
import inspect
import logging
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from google.api import annotations_pb2
from google.protobuf import message_factory

from mesh.runtime import (audit, errors, idempotency, internal, limits, live, local, logs,
                          platform_events, sandbox, tls, watch, wire)
from mesh.runtime.context import (TENANT_HEADER, call_metadata, current_call, current_metadata,
                                  current_service)
from mesh.runtime.db import Database
from mesh.runtime.idempotency import Idempotency
from mesh.runtime.metrics import MethodMetrics, expose
from mesh.runtime.peers import Peers
from mesh.runtime.revocation import RevocationGuard
from mesh.runtime.service import Runtime, ServiceDefinition, registration, service_descriptor
from mesh.runtime.settings import Settings
from mesh.runtime.telemetry import TRACEPARENT, ServerSpan, Tracing

log = logging.getLogger("mesh.server")


def _failure(exc: BaseException, method: str) -> errors.DomainError:
    if isinstance(exc, errors.DomainError):
        return exc
    if isinstance(exc, NotImplementedError):
        return errors.Unimplemented(f"{method} is not implemented yet", details={"method": method})
    log.error("unhandled error in %s", method, exc_info=exc)
    return errors.Internal("internal error; quote the correlation id to support",
                           details={"method": method})


@dataclass
class Guards:
    """Checks every call goes through before its handler (the edge hardening): revoked tokens
    refused, Idempotency-Key on creates, the platform's internal token on internal RPCs. Each
    costs a lookup or less when it does not apply."""

    revocations: RevocationGuard | None = None
    idempotency: Idempotency | None = None
    # The platform's internal token (mesh.runtime.internal), which RPCs the contract marks
    # `internal` (no REST route; called only by other services) require; "" checks nothing
    # (a servicer built without settings, in unit tests).
    internal_token: str = ""


def _is_internal(method) -> bool:
    from agentmesh.common.v1 import annotations_pb2 as common

    return method.GetOptions().Extensions[common.auth].internal


def _internal_only(fn, expected: str):
    """An internal RPC's handler behind the internal token: the gateway never routes these, and
    the token keeps anything else that reaches the port (a tenant's outbound request aimed at
    it, another pod) from calling them with identity headers it made up."""
    is_coroutine = inspect.iscoroutinefunction(fn)

    @functools.wraps(fn)
    async def checked(request, context):
        presented = call_metadata(context).get(internal.HEADER, "")
        if not internal.verify(presented, expected):
            raise errors.Unauthenticated(
                "this RPC is internal: only the platform's own services may call it",
                reason="INTERNAL_TOKEN_REQUIRED")
        result = fn(request, context)
        return await result if is_coroutine else result

    return checked


def _body_field(method) -> str:
    """The request field a REST body fills (`body: "agent"`), or "" / "*"."""
    return method.GetOptions().Extensions[annotations_pb2.http].body


def _wrap_unary(fn, method: str, service: str, domain: str, guards: Guards, body: str = "",
                idempotent: bool = False, tracing: Tracing | None = None, holds: bool = False):
    is_coroutine = inspect.iscoroutinefunction(fn)
    metrics = MethodMetrics(service, method.rsplit("/", 1)[-1])
    revocations = guards.revocations
    keys = guards.idempotency if idempotent else None

    async def call(request, context):
        result = fn(request, context)
        return await result if is_coroutine else result

    async def guarded(request, context, metadata: dict[str, str], span: ServerSpan | None = None):
        started = time.perf_counter()
        try:
            if type(request) is wire.Malformed:
                raise wire.refusal(request)
            if revocations is not None:
                revocations.check(context)
            limits.check(request, body)
            key = metadata.get(idempotency.HEADER, "") if keys is not None else ""
            tenant = metadata.get(TENANT_HEADER, "") if key else ""
            if key and tenant:
                result = await keys.run(method, key, tenant, idempotency.caller_of(metadata),
                                        request, context, lambda: call(request, context))
            elif holds:  # a long poll: the time it is held waiting is not serving time
                held = [0.0]
                token = watch.HELD.set(held)
                try:
                    result = await call(request, context)
                finally:
                    watch.HELD.reset(token)
                    started += held[0]
            else:
                result = await call(request, context)
            elapsed = time.perf_counter() - started
            metrics.observe(elapsed)
            if log.isEnabledFor(logging.DEBUG):  # a runtime log level of DEBUG shows each call
                log.debug("%s answered OK in %.2f ms", method, elapsed * 1000)
            return result
        except grpc.aio.AbortError:
            metrics.observe(time.perf_counter() - started, "ABORTED")
            if span is not None:  # the handler aborted by itself
                span.failed(context.code() or grpc.StatusCode.UNKNOWN)
            raise
        except asyncio.CancelledError:
            metrics.observe(time.perf_counter() - started, "CANCELLED")
            if span is not None:
                span.failed(grpc.StatusCode.CANCELLED)
            raise
        except BaseException as exc:  # noqa: BLE001 - mapped, never leaked
            error = _failure(exc, method)
            elapsed = time.perf_counter() - started
            metrics.observe(elapsed, error.code.name)
            if span is not None:
                span.failed(error.code, error, exc)
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s answered %s (%s) in %.2f ms", method, error.code.name, error.reason,
                          elapsed * 1000)
            await context.abort_with_status(errors.to_status(error, domain))

    async def traced(request, context, metadata: dict[str, str]):
        span = tracing.start(service, method, metadata, metadata.get(TENANT_HEADER, ""))
        if span is None:  # the sampler dropped it
            return await guarded(request, context, metadata)
        succeeded = False
        try:
            result = await guarded(request, context, metadata, span)
            succeeded = True
            return result
        finally:
            span.end(succeeded)

    # A sampler other than "follow the caller" (OTEL_TRACES_SAMPLER) decides on every call.
    every_call = tracing is not None and tracing.every_call

    @functools.wraps(fn)
    async def handler(request, context):
        # Read once: grpc.aio builds the pairs anew on every invocation_metadata().
        metadata = dict(context.invocation_metadata() or ())
        tokens = (current_call.set(context), current_service.set(service),
                  current_metadata.set(metadata))
        try:
            # Only calls the gateway sampled (W3C flags 01) pay for a span.
            traceparent = metadata.get(TRACEPARENT, "") if tracing is not None else ""
            if traceparent.endswith("-01") or every_call:
                return await traced(request, context, metadata)
            return await guarded(request, context, metadata)
        finally:
            current_call.reset(tokens[0])
            current_service.reset(tokens[1])
            current_metadata.reset(tokens[2])

    return handler


def _wrap_stream(fn, method: str, service: str, domain: str, guards: Guards, body: str = "",
                 tracing: Tracing | None = None):
    revocations = guards.revocations
    every_call = tracing is not None and tracing.every_call

    @functools.wraps(fn)
    async def handler(request, context):
        metadata = dict(context.invocation_metadata() or ())
        call_token, service_token = current_call.set(context), current_service.set(service)
        metadata_token = current_metadata.set(metadata)
        # A streamed call is traced as a unary one is (a streamed interaction is an action: the
        # gateway samples it always); its span lasts until the last message is sent.
        span = None
        if tracing is not None and (metadata.get(TRACEPARENT, "").endswith("-01") or every_call):
            span = tracing.start(service, method, metadata, metadata.get(TENANT_HEADER, ""))
        succeeded = False
        try:
            if type(request) is wire.Malformed:
                raise wire.refusal(request)
            if revocations is not None:
                revocations.check(context)
            limits.check(request, body)
            stream = fn(request, context)
            if inspect.isasyncgen(stream):
                async for item in stream:
                    yield item
            else:  # a generated placeholder raises NotImplementedError when called
                for item in stream or ():
                    yield item
            succeeded = True
        except grpc.aio.AbortError:
            if span is not None:
                span.failed(context.code() or grpc.StatusCode.UNKNOWN)
            raise
        except asyncio.CancelledError:
            if span is not None:
                span.failed(grpc.StatusCode.CANCELLED)
            raise
        except BaseException as exc:  # noqa: BLE001
            error = _failure(exc, method)
            if span is not None:
                span.failed(error.code, error, exc)
            await context.abort_with_status(errors.to_status(error, domain))
        finally:
            if span is not None:
                span.end(succeeded)
            current_call.reset(call_token)
            current_service.reset(service_token)
            current_metadata.reset(metadata_token)

    return handler


def method_handlers(servicer: Any, service: str, guards: Guards,
                    tracing: Tracing | None = None) -> dict[str, grpc.RpcMethodHandler]:
    """The servicer's methods as gRPC handlers by name, each wrapped once: errors mapped,
    context set, guards applied, malformed bodies refused (`wire.safe_deserializer`), a span
    for sampled calls when tracing is on. Built here rather than by the generated
    `add_*_to_server`, so the deserializers can be the safe ones; the server gets them as one
    generic handler, and calls made in-process (mesh.runtime.local) call them by path."""
    descriptor = service_descriptor(servicer)
    domain = f"{service}.agentmesh.dev"
    traced = tracing is not None and not descriptor.full_name.startswith("opentelemetry.")
    table = {}
    for method in descriptor.methods:
        fn = getattr(servicer, method.name)
        if guards.internal_token and _is_internal(method):
            if method.server_streaming:  # not needed yet; never leave one unchecked
                raise TypeError(f"{method.full_name}: an internal streaming RPC needs the "
                                "internal token check written for streams")
            fn = _internal_only(fn, guards.internal_token)
        path = f"/{descriptor.full_name}/{method.name}"
        request_class = message_factory.GetMessageClass(method.input_type)
        response_class = message_factory.GetMessageClass(method.output_type)
        deserialize = wire.safe_deserializer(request_class)
        if method.server_streaming:
            table[method.name] = grpc.unary_stream_rpc_method_handler(
                _wrap_stream(fn, path, service, domain, guards, _body_field(method),
                             tracing if traced else None), deserialize,
                response_class.SerializeToString)
            continue
        idempotent = idempotency.applies_to(method)
        # A request with `wait_seconds` may be held (mesh.runtime.watch: long polls).
        holds = "wait_seconds" in request_class.DESCRIPTOR.fields_by_name
        handler = _wrap_unary(fn, path, service, domain, guards, _body_field(method), idempotent,
                              tracing if traced else None, holds)
        serialize = (idempotency.serializer(response_class) if idempotent
                     else response_class.SerializeToString)
        table[method.name] = grpc.unary_unary_rpc_method_handler(handler, deserialize, serialize)
    return table


@dataclass
class RunningService:
    definition: ServiceDefinition
    runtime: Runtime
    server: grpc.aio.Server
    health: Any
    port: int
    names: list[str] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)
    database_kind: str = ""
    revisions: list[str] = field(default_factory=list)
    audit: Any = None  # the audit trail's forwarder to observability (mesh.runtime.audit)
    events: Any = None  # the platform events' sender to integration (platform_events.Sender)

    async def set_serving(self, serving: bool) -> None:
        status = (health_pb2.HealthCheckResponse.SERVING if serving
                  else health_pb2.HealthCheckResponse.NOT_SERVING)
        for name in ["", *self.names]:
            await self.health.set(name, status)

    async def stop(self, grace: float) -> None:
        # Calls to it go over the network from now on, as from elsewhere.
        local.unhost(self.definition.name, f"{self.runtime.settings.host}:{self.port}")
        await self.health.enter_graceful_shutdown()
        for hook in self.runtime.drain_hooks:  # held long polls answer now (mesh.runtime.watch)
            hook()
        await self.server.stop(grace)
        if self.audit is not None:
            await self.audit.close()
        if self.events is not None:
            await self.events.close()
        await self.definition.stop_state(self.runtime)
        await self.runtime.peers.close()
        if self.runtime.db is not None:
            self.runtime.db.close()
        log.info("stopped %s", self.definition.name)


async def start(definition: ServiceDefinition, settings: Settings, port: int | None = None,
                revocations: RevocationGuard | None = None) -> RunningService:
    """Migrates, builds and starts one service; it reports SERVING when this returns."""
    database = None
    if definition.tables:
        database = Database.for_service(definition.name, settings)
        await asyncio.to_thread(database.migrate, definition.migration_dirs())
    runtime = Runtime(definition.name, settings, Peers(settings), database, revocations)
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    tracing = Tracing.of(settings)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    guards = Guards(revocations, Idempotency(database, settings) if database else None,
                    internal.token(settings))
    names = []
    unary: dict[str, grpc.RpcMethodHandler] = {}  # by path: what local calls may call
    for servicer in definition.build(runtime):
        table = method_handlers(servicer, definition.name, guards, tracing)
        full_name = service_descriptor(servicer).full_name
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(full_name, table),))
        unary.update({f"/{full_name}/{name}": handler for name, handler in table.items()
                      if not handler.response_streaming})
        names.append(registration(servicer)[2])
    if definition.extra_handlers is not None:
        server.add_generic_rpc_handlers(tuple(definition.extra_handlers(runtime)))
    reflection.enable_server_reflection(
        [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME,
         *names], server)
    running = RunningService(definition, runtime, server, health_servicer, 0, names)
    if database is not None:
        running.database_kind = "sqlite" if database.sqlite_path is not None else "postgresql"
        running.revisions = await asyncio.to_thread(database.revisions)
    await running.set_serving(False)
    wanted = settings.port if port is None else port
    running.port = tls.add_port(server, settings, f"{settings.host}:{wanted}")
    await server.start()
    local.host(definition.name, f"{settings.host}:{running.port}", unary,
               receivers=runtime.receivers)
    await definition.start_state(runtime)
    if database is not None:
        audit.install()
        if "observability" in runtime.peers.addresses:
            running.audit = audit.Forwarder(
                database, runtime.peers,
                local_retention_days=settings.audit_local_retention_days)
            running.audit.start()
        if "integration" in runtime.peers.addresses:
            running.events = platform_events.Sender(database, runtime.peers)
            running.events.start()
    await running.set_serving(True)
    log.info("serving %s on %s:%d", definition.name, settings.host, running.port)
    return running


async def serve_many(definitions: Sequence[ServiceDefinition], settings: Settings,
                     ports: dict[str, int] | None = None,
                     ready: asyncio.Event | None = None) -> None:
    """Runs services until SIGTERM/SIGINT, then drains: health goes NOT_SERVING, in-flight
    calls get `grace_period_seconds` to finish."""
    logs.configure(definitions[0].name if len(definitions) == 1 else "mesh",
                   settings.log_level, settings.log_format)
    expose(settings)
    sandbox.configure(settings)  # its workers start on first use (mesh.runtime.sandbox)
    # Made before the services so that it knows how many this process hosts (service.name).
    tracing = Tracing.of(settings, tuple(d.name for d in definitions))
    # One revocation list per process, long-polled from identity, checked by every service.
    revocations = RevocationGuard(settings, Peers(settings))
    running = []
    for definition in definitions:
        running.append(await start(definition, settings, (ports or {}).get(definition.name),
                                   revocations))
    await revocations.start()
    poller = live.start(settings, Peers(settings), running)
    # One shipper per process; the observability service stores its own logs directly.
    shipper = None
    if not any(d.name == "observability" for d in definitions) or len(definitions) > 1:
        shipper = logs.ship_to_observability(running[0].runtime.peers, settings.log_level)
    settle_heap()
    if ready is not None:
        ready.set()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("draining %s", ", ".join(d.name for d in definitions))
    await revocations.stop()
    await revocations.peers.close()
    if poller is not None:
        await poller.stop()
        await poller.peers.close()
    if shipper is not None:
        await shipper.stop()
    if tracing is not None:  # queued spans leave while the receiver may still be up
        await asyncio.to_thread(tracing.force_flush, 2000)
    await asyncio.gather(*(r.stop(settings.grace_period_seconds) for r in running))
    await sandbox.shutdown()
    if tracing is not None:
        tracing.shutdown()


def settle_heap() -> None:
    """What start-up made (modules, protobuf descriptors, SQLAlchemy mappers: some 340,000
    objects in the shared services process) lives as long as the process. Frozen out of the
    collector's reach, a full collection scans only what serving made: with them, each one
    stopped every call in the process for 80-175 ms (docs/budgets.md)."""
    gc.collect()
    gc.freeze()


async def serve(definition: ServiceDefinition, settings: Settings,
                ready: asyncio.Event | None = None) -> None:
    await serve_many([definition], settings, ready=ready)
