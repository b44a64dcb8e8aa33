"""OTLP spans (the official `opentelemetry-proto` messages) as rows, each filed under the tenant
its attributes name and the Agent Mesh service that made it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as otlp

from mesh.runtime.tables import new_id
from mesh.runtime.telemetry import SERVICE_NAMESPACE

_KINDS = {0: "SPAN_KIND_UNSPECIFIED", 1: "SPAN_KIND_INTERNAL", 2: "SPAN_KIND_SERVER",
          3: "SPAN_KIND_CLIENT", 4: "SPAN_KIND_PRODUCER", 5: "SPAN_KIND_CONSUMER"}
_STATUS = {0: "SPAN_STATUS_UNSPECIFIED", 1: "SPAN_STATUS_OK", 2: "SPAN_STATUS_ERROR"}
# Attribute names that carry the tenant: ours, and the gateway's custom tag.
_TENANT_KEYS = ("agentmesh.tenant_id", "tenant_id")
# Attribute names that carry what the span worked on, by which its trace is found.
_SUBJECT_KEYS = ("agentmesh.call_id", "agentmesh.execution_id")


def _value(any_value) -> Any:
    kind = any_value.WhichOneof("value")
    if kind is None:
        return None
    if kind in ("array_value", "kvlist_value"):
        return json_format.MessageToDict(getattr(any_value, kind))
    if kind == "bytes_value":
        return any_value.bytes_value.hex()
    return getattr(any_value, kind)


def _time(nanos: int) -> datetime | None:
    return datetime.fromtimestamp(nanos / 1e9, UTC) if nanos else None


def span_rows(request: otlp.ExportTraceServiceRequest, now: datetime) -> list[dict[str, Any]]:
    """The `spans` rows of an export, as column values (inserted without ORM objects: spans
    are most of what the platform writes, and the ORM's unit of work doubled their cost)."""
    rows = []
    for resource_spans in request.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                attributes = {a.key: _value(a.value) for a in span.attributes}
                tenant = next((str(attributes[k]) for k in _TENANT_KEYS if attributes.get(k)), "")
                # Agent Mesh's short name (`agents`, `gateway`): the runtime's attribute, else
                # the resource's `service.name` without the `agentmesh-` of the platform's own.
                service = str(attributes.get("agentmesh.service")
                              or str(resource.get("service.name", "")).removeprefix(
                                  f"{SERVICE_NAMESPACE}-"))
                rows.append({
                    "id": new_id(), "created_at": now, "updated_at": now,
                    "tenant_id": tenant, "trace_id": span.trace_id.hex(),
                    "span_id": span.span_id.hex(), "parent_span_id": span.parent_span_id.hex(),
                    "name": span.name, "service": service,
                    "kind": _KINDS.get(span.kind, "SPAN_KIND_UNSPECIFIED"),
                    "started_at": _time(span.start_time_unix_nano),
                    "ended_at": _time(span.end_time_unix_nano),
                    "duration_ms": max(0, span.end_time_unix_nano
                                       - span.start_time_unix_nano) / 1e6,
                    "status": _STATUS.get(span.status.code, "SPAN_STATUS_UNSPECIFIED"),
                    "status_message": span.status.message, "attributes": attributes,
                    "subject_id": str(next((attributes[k] for k in _SUBJECT_KEYS
                                            if attributes.get(k)), ""))})
    return rows
