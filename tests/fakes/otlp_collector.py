"""An OTLP/gRPC trace receiver that is not the project's: the official
`opentelemetry.proto.collector.trace.v1.TraceService` of the `opentelemetry-proto` package (its
generated servicer base, registration and messages), on a real port. It keeps every export and
the metadata it came with, and answers OK.

    collector = OtlpCollector()
    ... OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint ...
    spans = collector.wait_for(lambda spans: any(s.name == "x" for s in spans))
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2


def value_of(any_value) -> Any:
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [value_of(v) for v in any_value.array_value.values]
    return getattr(any_value, kind) if kind else None


@dataclass
class ReceivedSpan:
    span: trace_pb2.Span
    resource: dict[str, Any]
    scope: str
    metadata: dict[str, str]  # of the export that carried it

    @property
    def name(self) -> str:
        return self.span.name

    @property
    def trace_id(self) -> str:
        return self.span.trace_id.hex()

    @property
    def attributes(self) -> dict[str, Any]:
        return {a.key: value_of(a.value) for a in self.span.attributes}

    @property
    def service_name(self) -> str:
        return self.resource.get("service.name", "")


class OtlpCollector(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.exports: list[tuple[dict[str, str], trace_service_pb2.ExportTraceServiceRequest]] = []
        self.server = grpc.server(ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def Export(self, request, context):
        with self._lock:
            self.exports.append((dict(context.invocation_metadata()), request))
        return trace_service_pb2.ExportTraceServiceResponse()

    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            exports = list(self.exports)
        found = []
        for metadata, request in exports:
            for resource_spans in request.resource_spans:
                resource = {a.key: value_of(a.value) for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    found.extend(ReceivedSpan(span, resource, scope_spans.scope.name, metadata)
                                 for span in scope_spans.spans)
        return found

    def wait_for(self, ready, timeout: float = 20.0) -> list[ReceivedSpan]:
        """The spans received once `ready(spans)` holds (or all of them at the timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            spans = self.spans()
            if ready(spans) or time.monotonic() > deadline:
                return spans
            time.sleep(0.2)

    def close(self) -> None:
        self.server.stop(None)
