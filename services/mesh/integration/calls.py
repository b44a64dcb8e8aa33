"""Calls to the owning services, as the caller: the peer's error passed through with its code,
reason and field violations (a 404 of the agents service stays a 404 here), and a paged list
read whole."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from mesh.runtime import errors

_ERRORS = {c.code: c for c in (errors.InvalidArgument, errors.NotFound, errors.AlreadyExists,
                               errors.FailedPrecondition, errors.Unauthenticated,
                               errors.PermissionDenied, errors.Unimplemented, errors.Unavailable,
                               errors.Aborted, errors.ResourceExhausted)}
# A tenant's whole list is read in pages of this size, up to this many items per kind.
PAGE_SIZE = 100
MAX_ITEMS = 5000


def peer_error(error: grpc.aio.AioRpcError, service: str) -> errors.DomainError:
    """The owning service's error as a domain error of the same code."""
    envelope: dict[str, Any] = {}
    for key, value in error.trailing_metadata() or ():
        if key == errors.ERROR_TRAILER:
            try:
                envelope = json.loads(value)
            except ValueError:
                envelope = {}
    details = dict(envelope.get("details") or {})
    violations = [(v.get("field", ""), v.get("description", ""))
                  for v in details.pop("field_violations", []) if isinstance(v, dict)]
    reason = str(details.pop("reason", "") or "")
    cls = _ERRORS.get(error.code(), errors.Unavailable)
    if error.code() == grpc.StatusCode.UNIMPLEMENTED:
        reason = reason or "TARGET_SERVICE_NOT_BUILT"
    if cls is errors.Unavailable and not reason:
        reason = "PEER_UNAVAILABLE"
    return cls(envelope.get("message") or error.details() or f"the {service} service failed",
               reason=reason, details={k: v for k, v in details.items()
                                       if isinstance(v, (str, int, float, bool))},
               field_violations=violations)


async def call(service: str, method: Callable[[Message], Awaitable[Message]],
               request: Message) -> Any:
    try:
        return await method(request)
    except grpc.aio.AioRpcError as exc:
        raise peer_error(exc, service) from None


def describe(error: errors.DomainError) -> str:
    """`CODE: message`, for per-item results."""
    return f"{error.code.name}: {error.message}"


async def list_all(service: str, method, request_class: type[Message], **filters) -> list:
    """Every item of a paged list RPC."""
    items: list = []
    page = 1
    while True:
        answer = await call(service, method, request_class(page=page, page_size=PAGE_SIZE,
                                                           **filters))
        items.extend(answer.items)
        if page >= answer.pages or not answer.items or len(items) >= MAX_ITEMS:
            return items
        page += 1


def to_dict(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def plain(value: Any) -> Any:
    """JSON from a Struct with integral numbers as integers (Struct numbers are all floats)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value
