"""Conversion between SQLModel rows and proto messages, driven by the message descriptor, so a
service never copies fields one by one.

Rows store enums by value name, Timestamps as aware datetimes, Structs, maps and repeated
fields as JSON columns.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from mesh.runtime.errors import invalid_field
from mesh.runtime.repository import aware

M = TypeVar("M", bound=Message)
_TIMESTAMP = "google.protobuf.Timestamp"
_STRUCT = "google.protobuf.Struct"


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _is_repeated(field: FieldDescriptor) -> bool:
    return field.is_repeated


def to_message(row: Any, cls: type[M], **overrides: Any) -> M:
    message = cls()
    for field in cls.DESCRIPTOR.fields:
        value = overrides.get(field.name, getattr(row, field.name, None))
        if value is None:
            continue
        target = field.message_type.full_name if field.message_type else ""
        if _is_map(field):
            getattr(message, field.name).update(value)
        elif _is_repeated(field):
            getattr(message, field.name).extend(value)
        elif target == _TIMESTAMP:
            getattr(message, field.name).FromDatetime(aware(value))
        elif target == _STRUCT:
            getattr(message, field.name).update(value)
        elif field.enum_type is not None:
            enum_value = field.enum_type.values_by_name.get(value)
            setattr(message, field.name, enum_value.number if enum_value else 0)
        elif field.message_type is not None:
            getattr(message, field.name).CopyFrom(value)
        else:
            setattr(message, field.name, value)
    return message


def python_value(message: Message, field: FieldDescriptor) -> Any:
    value = getattr(message, field.name)
    target = field.message_type.full_name if field.message_type else ""
    if _is_map(field):
        return dict(value)
    if _is_repeated(field):
        return list(value)
    if target == _TIMESTAMP:
        return value.ToDatetime(tzinfo=UTC) if value.seconds or value.nanos else None
    if target == _STRUCT:
        return json_format.MessageToDict(value)
    if field.enum_type is not None:
        return field.enum_type.values_by_number[value].name
    return value


def changes(message: Message, writable: set[str], mask_paths: list[str] | None = None,
            body_name: str = "") -> dict[str, Any]:
    """The fields an update changes. One rule for every service (docs/contract.md, "Updates"):
    with an `update_mask`, exactly the fields it names (partial update); without one, the
    update is a full replacement of every writable field, so a field left out of the body takes
    its default. proto3 cannot tell a field sent as `false`/`0`/`""` from one left out, so
    "every populated field" would silently drop `{"active": false}`. A masked field that is not
    writable is INVALID_ARGUMENT; output-only fields in the body are ignored (clients echo back
    what they read)."""
    fields = message.DESCRIPTOR.fields_by_name
    if mask_paths:
        unknown = [p for p in mask_paths if p not in writable]
        if unknown:
            raise invalid_field("update_mask", f"cannot update {', '.join(unknown)}; "
                                f"updatable: {', '.join(sorted(writable))}")
        names = mask_paths
    else:
        names = sorted(writable)
    return {name: python_value(message, fields[name]) for name in names}


def values(message: Message, writable: set[str]) -> dict[str, Any]:
    """Every writable field of a create request (defaults included)."""
    fields = message.DESCRIPTOR.fields_by_name
    return {name: python_value(message, fields[name]) for name in writable}
