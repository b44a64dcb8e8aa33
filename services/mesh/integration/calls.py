"""Calls to the owning services, as the caller: the peer's error passed through with its code,
reason and field violations (`errors.from_peer`: a 404 of the agents service stays a 404
here), a paged list read whole, compensations that never hide the original error, and the
bodies sent, parsed and checked as the owner will check them."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import json_format, struct_pb2
from google.protobuf.message import Message

from mesh.runtime import errors, limits
from mesh.runtime.convert import plain
from mesh.runtime.errors import InvalidArgument, invalid_field

log = logging.getLogger("mesh.integration")

# A tenant's whole list is read in pages of this size, up to this many items per kind.
PAGE_SIZE = 100
MAX_ITEMS = 5000


async def call(service: str, method: Callable[[Message], Awaitable[Message]],
               request: Message) -> Any:
    try:
        return await method(request)
    except grpc.aio.AioRpcError as exc:
        raise errors.from_peer(exc, service) from None


async def quietly(awaitable) -> bool:
    """A compensating call: its failure is logged, never raised over the original error."""
    try:
        await awaitable
        return True
    except grpc.aio.AioRpcError:
        log.exception("compensation failed")
        return False


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


def struct(value: dict[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(value)
    return out


def struct_value(message: Message, name: str) -> Any:
    """The Struct field `name` of a request as JSON (None when not given)."""
    return plain(json_format.MessageToDict(getattr(message, name))) \
        if message.HasField(name) else None


def parse(data: Any, cls: type[Message], field: str) -> Message:
    """`data` as a `cls` message for another service, checked against the contract's limits
    here, with every problem named under `field` (`agent.name`, `agents[3].config`)."""
    if not isinstance(data, dict):
        raise invalid_field(field, "must be an object")
    try:
        message = json_format.ParseDict(data, cls())
    except json_format.ParseError as exc:
        raise InvalidArgument(f"{field}: {str(exc).splitlines()[0][:300]}",
                              reason="INVALID_BODY",
                              field_violations=[(field, str(exc).splitlines()[0][:300])]) from None
    try:
        limits.check(message)
    except InvalidArgument as exc:
        raise InvalidArgument(f"{field}.{exc.message}", reason=exc.reason,
                              field_violations=[(f"{field}.{f}", d)
                                                for f, d in exc.field_violations]) from None
    return message
