"""The OTLP/gRPC trace receiver (the official `TraceService`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as otlp
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as otlp_grpc

from mesh.observability.models import SpanRow
from mesh.observability.otlp import sdk_span_rows, span_rows
from mesh.observability.state import ObservabilityState
from mesh.runtime import internal
from mesh.runtime.db import in_turns
from mesh.runtime.service import Runtime
from mesh.runtime.tables import utcnow

log = logging.getLogger("mesh.observability")


class TraceReceiver(otlp_grpc.TraceServiceServicer):
    """OTLP/gRPC trace receiver (the official `TraceService`): stores the spans the platform's
    own exporters send.

    A span is filed under the tenant its attributes name, which is to be trusted only from the
    platform's own exporters: the services' runtime sets `agentmesh.tenant_id` and the gateway
    its `tenant_id` tag, both from the identity the gateway verified. So an Export must present
    the platform's internal token (`mesh.runtime.internal`, compared in constant time); anything
    else that reaches this port is refused UNAUTHENTICATED and nothing is stored."""

    def __init__(self, runtime: Runtime) -> None:
        self.db = runtime.database
        state: ObservabilityState = runtime.state
        self.intake = state.intake
        self.token = internal.token(runtime.settings)
        runtime.receivers["spans"] = self.receive  # the spans of this process, without OTLP

    async def Export(self, request: otlp.ExportTraceServiceRequest, context):
        presented = dict(context.invocation_metadata() or ()).get(internal.HEADER, "")
        if not internal.verify(presented, self.token):
            self.intake.spans_refused += 1
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                "spans are accepted only from the platform's own exporters")
        now = utcnow()
        try:
            await self._store(span_rows(request, now), now)
        except Exception:  # noqa: BLE001 - an exporter retries; never a stack trace out
            log.exception("could not store %d spans", sum(
                len(s.spans) for r in request.resource_spans for s in r.scope_spans))
            await context.abort(grpc.StatusCode.UNAVAILABLE, "spans not stored; retry")
        return otlp.ExportTraceServiceResponse()

    async def receive(self, spans) -> None:
        """Stores spans this process made (the SDK's, mesh.runtime.local): trusted as the
        platform's own exporter's; raises when they are not stored."""
        now = utcnow()
        await self._store(spans, now, lambda part: sdk_span_rows(part, now))

    async def _store(self, items: Sequence, now,
                     rows_of: Callable[[Sequence], list[dict]] = list) -> None:
        """`items` stored in slices, each turned into rows (`rows_of`) just before its
        transaction: a whole batch of the SDK's (512 spans) converted at once held the loop
        for milliseconds."""
        if not items:
            return

        async for part in in_turns(items):
            rows = rows_of(part)
            await self.db.write(lambda session: session.connection().execute(
                SpanRow.__table__.insert(), rows), inline=True)
        self.intake.spans_received += len(items)
        self.intake.last_export_at = now

    def handler(self) -> grpc.GenericRpcHandler:
        """The generated registration's handler, without the runtime's wrapper: OTLP carries
        none of the contract's annotations, and its Export must not make spans of its own."""
        service = otlp.DESCRIPTOR.services_by_name["TraceService"]
        return grpc.method_handlers_generic_handler(service.full_name, {
            "Export": grpc.unary_unary_rpc_method_handler(
                self.Export, otlp.ExportTraceServiceRequest.FromString,
                otlp.ExportTraceServiceResponse.SerializeToString)})
