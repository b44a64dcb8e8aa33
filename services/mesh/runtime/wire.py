"""Malformed request messages become INVALID_ARGUMENT naming the field, never a 500.

grpcio deserializes a request before any handler or interceptor code runs; a body it cannot
parse (Envoy's transcoder writes corrupt wire format for some JSON, for example an object as a
`map<string, string>` value) ends as UNKNOWN "Unexpected DecodeError" with Python's text in it.
The runtime registers every method with `safe_deserializer`: a parse failure yields a marker
object, and the method wrapper (mesh.runtime.server) raises `refusal(marker)`, which it maps
like any other domain error. To name the field, the bytes are walked
field by field against the message descriptor until the part that does not parse is found.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError

from mesh.runtime.errors import InvalidArgument


class Malformed:
    """Stands in for a request that did not parse."""

    def __init__(self, field: str) -> None:
        self.field = field


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise DecodeError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def find_bad_field(descriptor: Descriptor, data: bytes, prefix: str = "") -> str:
    """The dotted path of the first field whose bytes do not parse ("" when none is found)."""
    from google.protobuf import message_factory

    pos = 0
    try:
        while pos < len(data):
            key, pos = _varint(data, pos)
            number, wire_type = key >> 3, key & 7
            field = descriptor.fields_by_number.get(number)
            name = f"{prefix}{field.name}" if field else f"{prefix}#{number}"
            if wire_type == 0:
                _, pos = _varint(data, pos)
            elif wire_type == 1:
                pos += 8
            elif wire_type == 5:
                pos += 4
            elif wire_type == 2:
                length, pos = _varint(data, pos)
                chunk = data[pos:pos + length]
                if len(chunk) != length:
                    return name
                pos += length
                if field is not None and field.type == FieldDescriptor.TYPE_MESSAGE:
                    cls = message_factory.GetMessageClass(field.message_type)
                    try:
                        cls.FromString(chunk)
                    except DecodeError:
                        return find_bad_field(field.message_type, chunk, f"{name}.") or name
                elif field is not None and field.type == FieldDescriptor.TYPE_STRING:
                    try:
                        chunk.decode("utf-8")
                    except UnicodeDecodeError:
                        return name
            else:
                return name
    except DecodeError:
        return prefix.rstrip(".")
    return ""


def _field_label(path: str) -> str:
    # Map entries are nested messages: `agent.labels.value` names the map field and the part.
    return path or "body"


def safe_deserializer(message_class):
    """`message_class.FromString`, but a body that does not parse becomes `Malformed`."""
    return _safe(message_class.FromString, message_class.DESCRIPTOR)


def _safe(deserializer, descriptor: Descriptor | None):
    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception:  # noqa: BLE001 - DecodeError, UnicodeDecodeError, RuntimeWarning...
            field = find_bad_field(descriptor, data) if descriptor is not None else ""
            return Malformed(_field_label(field))

    return parse


def refusal(request: Malformed) -> InvalidArgument:
    return InvalidArgument(f"{request.field}: the value is malformed or of the wrong type",
                           reason="MALFORMED_REQUEST", details={"field": request.field},
                           field_violations=[(request.field, "malformed or of the wrong type")])
