"""The OTLP/gRPC trace receiver (the official `TraceService`)."""

from __future__ import annotations

import logging

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as otlp
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as otlp_grpc
from sqlmodel import Session

from mesh.observability.models import SpanRow
from mesh.observability.otlp import span_rows
from mesh.observability.state import ObservabilityState
from mesh.runtime import internal
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

    async def Export(self, request: otlp.ExportTraceServiceRequest, context):
        presented = dict(context.invocation_metadata() or ()).get(internal.HEADER, "")
        if not internal.verify(presented, self.token):
            self.intake.spans_refused += 1
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                "spans are accepted only from the platform's own exporters")
        now = utcnow()
        rows = span_rows(request, now)
        if rows:
            def store(session: Session) -> None:
                session.connection().execute(SpanRow.__table__.insert(), rows)

            try:
                await self.db.write(store)
            except Exception:  # noqa: BLE001 - an exporter retries; never a stack trace out
                log.exception("could not store %d spans", len(rows))
                await context.abort(grpc.StatusCode.UNAVAILABLE, "spans not stored; retry")
            self.intake.spans_received += len(rows)
            self.intake.last_export_at = now
        return otlp.ExportTraceServiceResponse()

    def handler(self) -> grpc.GenericRpcHandler:
        """The generated registration's handler, without the runtime's wrapper: OTLP carries
        none of the contract's annotations, and its Export must not make spans of its own."""
        service = otlp.DESCRIPTOR.services_by_name["TraceService"]
        return grpc.method_handlers_generic_handler(service.full_name, {
            "Export": grpc.unary_unary_rpc_method_handler(
                self.Export, otlp.ExportTraceServiceRequest.FromString,
                otlp.ExportTraceServiceResponse.SerializeToString)})
