"""OTLP spans (the official `opentelemetry-proto` messages) as rows, each filed under the tenant
its attributes name and the Agent Mesh service that made it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common._internal import _encode_value
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as otlp
from opentelemetry.sdk.trace import ReadableSpan

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
                rows.append(_row(
                    now, resource, {a.key: _value(a.value) for a in span.attributes},
                    span.trace_id.hex(), span.span_id.hex(), span.parent_span_id.hex(),
                    span.name, span.kind, span.start_time_unix_nano, span.end_time_unix_nano,
                    span.status.code, span.status.message))
    return rows


def sdk_span_rows(spans: Sequence[ReadableSpan], now: datetime) -> list[dict[str, Any]]:
    """The same rows, of spans this process made (the SDK's ends of spans, handed over in the
    process: mesh.runtime.telemetry), without their OTLP encoding and decoding, which cost more
    than making the span did."""
    rows = []
    for span in spans:
        context, parent = span.context, span.parent
        rows.append(_row(  # of the resource only `service.name` is read: not converted
            now, span.resource.attributes, _sdk_attributes(span.attributes),
            f"{context.trace_id:032x}", f"{context.span_id:016x}",
            f"{parent.span_id:016x}" if parent is not None else "", span.name,
            span.kind.value + 1,  # OTLP's kinds count UNSPECIFIED first
            span.start_time or 0, span.end_time or 0, span.status.status_code.value,
            span.status.description or ""))
    return rows


def _sdk_attributes(attributes) -> dict[str, Any]:
    # Scalars are stored as they are; anything else as the OTLP path stores it (its encoding).
    return {key: value if isinstance(value, (str, bool, int, float))
            else _value(_encode_value(value)) for key, value in (attributes or {}).items()}


def _row(now: datetime, resource: Mapping[str, Any], attributes: dict[str, Any], trace_id: str,
         span_id: str, parent_span_id: str, name: str, kind: int, start_ns: int, end_ns: int,
         status: int, status_message: str) -> dict[str, Any]:
    tenant = next((str(attributes[k]) for k in _TENANT_KEYS if attributes.get(k)), "")
    # Agent Mesh's short name (`agents`, `gateway`): the runtime's attribute, else the
    # resource's `service.name` without the `agentmesh-` of the platform's own.
    service = str(attributes.get("agentmesh.service")
                  or str(resource.get("service.name", "")).removeprefix(f"{SERVICE_NAMESPACE}-"))
    return {
        "id": new_id(), "created_at": now, "updated_at": now,
        "tenant_id": tenant, "trace_id": trace_id, "span_id": span_id,
        "parent_span_id": parent_span_id, "name": name, "service": service,
        "kind": _KINDS.get(kind, "SPAN_KIND_UNSPECIFIED"),
        "started_at": _time(start_ns), "ended_at": _time(end_ns),
        "duration_ms": max(0, end_ns - start_ns) / 1e6,
        "status": _STATUS.get(status, "SPAN_STATUS_UNSPECIFIED"),
        "status_message": status_message, "attributes": attributes,
        "subject_id": str(next((attributes[k] for k in _SUBJECT_KEYS if attributes.get(k)), ""))}
