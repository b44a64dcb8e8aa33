"""One gRPC server for every service: health, reflection, telemetry, error mapping, graceful
shutdown. A service supplies a `ServiceDefinition`; this module does the rest."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from mesh.runtime import errors, logs
from mesh.runtime.context import CORRELATION_HEADER, correlation_id
from mesh.runtime.db import Database
from mesh.runtime.settings import Settings

log = logging.getLogger("mesh.server")

# (add_XServicer_to_server, servicer, full service name)
Registration = tuple[Callable[[Any, grpc.aio.Server], None], Any, str]


@dataclass
class ServiceDefinition:
    """What a service is: its name, its servicers, its migrations."""

    name: str
    build: Callable[[Settings, Database | None], list[Registration]]
    migrations: Path | str | None = None  # a directory or an Alembic `package:dir`
    # Work before the service reports SERVING (for example making the first signing keys).
    on_start: Callable[[Database | None], Awaitable[None]] | None = None
    extra_shutdown: list[Callable[[], Awaitable[None]]] = field(default_factory=list)


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Maps every failure of a handler to a status with details; never leaks a stack trace."""

    def __init__(self, domain: str) -> None:
        self.domain = domain

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        cid = dict(handler_call_details.invocation_metadata or ()).get(CORRELATION_HEADER, "")

        async def fail(context: grpc.aio.ServicerContext, exc: BaseException) -> None:
            if isinstance(exc, errors.DomainError):
                error = exc
            elif isinstance(exc, NotImplementedError):
                error = errors.Unimplemented(f"{method} is not implemented yet",
                                             details={"method": method})
            else:
                log.exception("unhandled error in %s", method)
                error = errors.Internal("internal error; quote the correlation id to support",
                                        details={"method": method})
            await context.abort_with_status(errors.to_status(error, self.domain))

        if handler.unary_unary:
            inner = handler.unary_unary

            async def unary_unary(request, context):
                token = correlation_id.set(cid)
                try:
                    return await inner(request, context)
                except grpc.aio.AbortError:
                    raise
                except BaseException as exc:  # noqa: BLE001 - mapped, never leaked
                    if isinstance(exc, asyncio.CancelledError):
                        raise
                    await fail(context, exc)
                finally:
                    correlation_id.reset(token)

            return grpc.unary_unary_rpc_method_handler(
                unary_unary, handler.request_deserializer, handler.response_serializer)
        if handler.unary_stream:
            inner_stream = handler.unary_stream

            async def unary_stream(request, context):
                token = correlation_id.set(cid)
                try:
                    async for item in inner_stream(request, context):
                        yield item
                except grpc.aio.AbortError:
                    raise
                except BaseException as exc:  # noqa: BLE001
                    if isinstance(exc, asyncio.CancelledError):
                        raise
                    await fail(context, exc)
                finally:
                    correlation_id.reset(token)

            return grpc.unary_stream_rpc_method_handler(
                unary_stream, handler.request_deserializer, handler.response_serializer)
        return handler


def _telemetry_interceptors(settings: Settings, service: str) -> list[Any]:
    from opentelemetry import trace
    from opentelemetry.instrumentation.grpc import aio_server_interceptor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider(resource=Resource.create({"service.name": f"agentmesh-{service}"}))
    if settings.otel_exporter_otlp_endpoint:  # exporter off unless configured
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            provider.add_span_processor(BatchSpanProcessor(
                OTLPSpanExporter(endpoint=settings.otel_exporter_otlp_endpoint, insecure=True)))
        except ImportError:
            log.warning("OTLP endpoint set but opentelemetry-exporter-otlp is not installed")
    trace.set_tracer_provider(provider)
    return [aio_server_interceptor(tracer_provider=provider)]


async def serve(definition: ServiceDefinition, settings: Settings,
                ready: asyncio.Event | None = None) -> None:
    """Runs the service until SIGTERM/SIGINT, then drains: health goes NOT_SERVING, in-flight
    calls get `grace_period_seconds` to finish."""
    logs.configure(definition.name, settings.log_level, settings.log_format)
    database = None
    if definition.migrations is not None:
        database = Database.for_service(definition.name, settings)
        await asyncio.to_thread(database.migrate, definition.migrations)
    server = grpc.aio.server(
        interceptors=[*_telemetry_interceptors(settings, definition.name),
                      ErrorInterceptor(f"{definition.name}.agentmesh.dev")],
        options=[("grpc.so_reuseport", 0)])
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME]
    registrations = definition.build(settings, database)
    for add, servicer, full_name in registrations:
        add(servicer, server)
        names.append(full_name)
    reflection.enable_server_reflection(names, server)
    for name in ["", *(r[2] for r in registrations)]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    port = server.add_insecure_port(f"{settings.host}:{settings.port}")
    await server.start()
    if definition.on_start:
        await definition.on_start(database)
    for name in ["", *(r[2] for r in registrations)]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("serving %s on %s:%d", definition.name, settings.host, port)
    if ready is not None:
        ready.set()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("draining %s", definition.name)
    await health_servicer.enter_graceful_shutdown()
    await server.stop(settings.grace_period_seconds)
    for hook in definition.extra_shutdown:
        await hook()
    if database is not None:
        database.close()
    log.info("stopped %s", definition.name)
