"""Domain errors and their one mapping to gRPC status, `google.rpc` details and the REST envelope.

A service raises `NotFound(...)`, `AlreadyExists(...)`, ...; `mesh.runtime.server` catches them
(and anything unexpected) in one interceptor. Native gRPC clients get a `google.rpc.Status` with
`ErrorInfo` (and `BadRequest` field violations); the same error also travels as the
`x-agentmesh-error` trailer, which the gateway's Lua filter turns into the REST envelope
`{error, message, details, correlation_id, timestamp}` without parsing protobuf.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

ERROR_TRAILER = "x-agentmesh-error"
# The envelope's own keys (the gateway adds the last three): `top_level` never replaces them.
_ENVELOPE_KEYS = frozenset({"error", "message", "details", "correlation_id", "request_id",
                            "timestamp"})


@dataclass
class DomainError(Exception):
    message: str
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    field_violations: list[tuple[str, str]] = field(default_factory=list)
    # Extra keys of the REST envelope, beside `error`, `message` and `details`, where an API the
    # seeds promise puts them (a denied dispatch's `status`, `reason` and `governance`).
    top_level: dict[str, Any] = field(default_factory=dict)

    code = grpc.StatusCode.UNKNOWN

    def __post_init__(self) -> None:
        super().__init__(self.message)
        if not self.reason:
            self.reason = self.code.name


class InvalidArgument(DomainError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(DomainError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(DomainError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(DomainError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Unauthenticated(DomainError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(DomainError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Unimplemented(DomainError):
    code = grpc.StatusCode.UNIMPLEMENTED


class Unavailable(DomainError):
    code = grpc.StatusCode.UNAVAILABLE


class Internal(DomainError):
    code = grpc.StatusCode.INTERNAL


class Aborted(DomainError):
    """A conflict with a concurrent or earlier request (HTTP 409)."""

    code = grpc.StatusCode.ABORTED


class ResourceExhausted(DomainError):
    """Too many attempts (HTTP 429). `details["retry_after"]` (seconds) also becomes a
    `google.rpc.RetryInfo` detail for gRPC clients; the gateway gives REST clients the same
    delay as the Retry-After header (from the envelope's `details.retry_after`)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


def retry_seconds(error: DomainError) -> int | None:
    """Whole seconds to wait before a retry (at least 1), when the error says."""
    try:
        return max(1, math.ceil(float(error.details["retry_after"])))
    except (KeyError, TypeError, ValueError):
        return None


def retry_delay(error: grpc.RpcError) -> float | None:
    """The delay a peer's `google.rpc.RetryInfo` asks for, in seconds (None: it gives none)."""
    status = rpc_status.from_call(error)
    for detail in status.details if status else ():
        info = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            return info.retry_delay.ToTimedelta().total_seconds()
    return None


def invalid_field(field_name: str, problem: str) -> InvalidArgument:
    return InvalidArgument(f"{field_name}: {problem}", field_violations=[(field_name, problem)])


def to_status(error: DomainError, domain: str) -> grpc.Status:
    """The `grpc.Status` to abort with: rich details plus the envelope trailer."""
    details = []
    info = error_details_pb2.ErrorInfo(
        reason=error.reason, domain=domain,
        metadata={k: str(v) for k, v in error.details.items()},
    )
    packed = any_pb2.Any()
    packed.Pack(info)
    details.append(packed)
    retry_after = retry_seconds(error)
    if retry_after is not None:
        packed = any_pb2.Any()
        packed.Pack(error_details_pb2.RetryInfo(
            retry_delay=duration_pb2.Duration(seconds=retry_after)))
        details.append(packed)
    if error.field_violations:
        bad = error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
            for f, d in error.field_violations])
        packed = any_pb2.Any()
        packed.Pack(bad)
        details.append(packed)
    status = rpc_status.to_status(status_pb2.Status(
        code=getattr(code_pb2, error.code.name), message=error.message, details=details))
    envelope_details: dict[str, Any] = dict(error.details)
    if error.reason != error.code.name:
        envelope_details["reason"] = error.reason
    if error.field_violations:
        envelope_details["field_violations"] = [
            {"field": f, "description": d} for f, d in error.field_violations]
        # The seeds' shape of a refused field (`details: {field, issue}`): the first violation.
        envelope_details.setdefault("field", error.field_violations[0][0])
        envelope_details.setdefault("issue", error.field_violations[0][1])
    envelope = {**{k: v for k, v in error.top_level.items()
                   if k not in _ENVELOPE_KEYS},
                "error": error.code.name, "message": error.message, "details": envelope_details}
    # ASCII-only JSON on one line: a valid gRPC metadata value.
    trailers = [(ERROR_TRAILER, json.dumps(envelope, ensure_ascii=True, separators=(",", ":")))]
    return status._replace(trailing_metadata=(*status.trailing_metadata, *trailers))


_BY_CODE = {c.code: c for c in (InvalidArgument, NotFound, AlreadyExists, FailedPrecondition,
                                Unauthenticated, PermissionDenied, Unimplemented, Unavailable,
                                Aborted, ResourceExhausted)}


def peer_envelope(error: grpc.aio.AioRpcError) -> dict[str, Any]:
    """The error envelope a peer service sent in its trailer ({} when there is none)."""
    for key, value in error.trailing_metadata() or ():
        if key == ERROR_TRAILER:
            try:
                found = json.loads(value)
            except ValueError:
                return {}
            return found if isinstance(found, dict) else {}
    return {}


def from_peer(error: grpc.aio.AioRpcError, service: str) -> DomainError:
    """Another service's error as a domain error of the same code, reason, details and field
    violations (read back from its envelope trailer), for a caller that passes it on: a 404 of
    the agents service stays a 404. A peer that cannot be reached is UNAVAILABLE
    PEER_UNAVAILABLE; a service not built yet, UNIMPLEMENTED TARGET_SERVICE_NOT_BUILT."""
    envelope = peer_envelope(error)
    details = dict(envelope.get("details") or {})
    violations = [(v.get("field", ""), v.get("description", ""))
                  for v in details.pop("field_violations", []) if isinstance(v, dict)]
    reason = str(details.pop("reason", "") or "")
    cls = _BY_CODE.get(error.code(), Unavailable)
    if error.code() == grpc.StatusCode.UNIMPLEMENTED:
        reason = reason or "TARGET_SERVICE_NOT_BUILT"
    if cls is Unavailable and not reason:
        reason = "PEER_UNAVAILABLE"
    return cls(envelope.get("message") or error.details() or f"the {service} service failed",
               reason=reason, details={k: v for k, v in details.items()
                                       if isinstance(v, (str, int, float, bool))},
               field_violations=violations)


def reason_of(error: grpc.RpcError) -> str:
    """The `ErrorInfo.reason` a peer's error carries (what a calling service branches on)."""
    status = rpc_status.from_call(error)
    for detail in status.details if status else ():
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info.reason
    return ""
