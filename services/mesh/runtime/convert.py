"""Conversion between rows and proto messages, driven by the message descriptor, so a service
never copies fields one by one.

Each message type is planned once (`_plan`): which fields exist, which are enums, timestamps,
JSON-shaped (Struct, map, repeated, nested message) or input-only. Converting a row is then a
dict comprehension and one constructor call (the protobuf constructor accepts enum names,
datetimes for Timestamps and dicts for Structs and maps), which costs a few microseconds.

Rows store enums by value name, Timestamps as aware datetimes, Structs, maps and repeated
fields as JSON columns. A row may be an ORM object or a raw tuple from the fast read path, where
JSON arrives as text and timestamps as ISO strings on SQLite.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from google.api import field_behavior_pb2
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from mesh.runtime.errors import invalid_field

M = TypeVar("M", bound=Message)
_TIMESTAMP = "google.protobuf.Timestamp"
_STRUCT = "google.protobuf.Struct"
_OUTPUT_ONLY = field_behavior_pb2.OUTPUT_ONLY
_INPUT_ONLY = field_behavior_pb2.INPUT_ONLY
_REQUIRED = field_behavior_pb2.REQUIRED

# How a stored value becomes a constructor argument.
_PLAIN, _TIME, _JSON, _ENUM = range(4)


def behaviors(field: FieldDescriptor) -> set[int]:
    return set(field.GetOptions().Extensions[field_behavior_pb2.field_behavior])


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _kind(field: FieldDescriptor) -> int:
    if field.message_type is not None and field.message_type.full_name == _TIMESTAMP \
            and not field.is_repeated:
        return _TIME
    if _is_map(field) or field.is_repeated or field.message_type is not None:
        return _JSON
    if field.enum_type is not None:
        return _ENUM
    return _PLAIN


@functools.cache
def _plan(cls: type[Message]) -> tuple[tuple[str, int, frozenset[str]], ...]:
    """(field name, kind, enum names) of every field a row may fill (input-only fields never)."""
    plan = []
    for field in cls.DESCRIPTOR.fields:
        if _INPUT_ONLY in behaviors(field):
            continue
        enums = frozenset(field.enum_type.values_by_name) if field.enum_type else frozenset()
        plan.append((field.name, _kind(field), enums))
    return tuple(plan)


_EPOCH = datetime(1970, 1, 1)
_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=UTC)


def _time(value: Any) -> dict[str, int]:
    """A Timestamp's fields from a datetime or SQLite's ISO text (naive values are UTC).
    A dict is what the constructor takes fastest: ~5x cheaper than a datetime."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    delta = value - (_EPOCH if value.tzinfo is None else _EPOCH_UTC)
    return {"seconds": delta.days * 86400 + delta.seconds, "nanos": delta.microseconds * 1000}


def _value(kind: int, value: Any, enums: frozenset[str]) -> Any:
    if kind == _TIME:
        return _time(value)
    if kind == _JSON:
        return json.loads(value) if isinstance(value, str) else value
    if kind == _ENUM:
        return value if value in enums else 0
    return value


def to_message(row: Any, cls: type[M], **overrides: Any) -> M:
    """A message from an ORM row (attributes named as the fields); `overrides` win."""
    kwargs = {}
    for name, kind, enums in _plan(cls):
        value = overrides[name] if name in overrides else getattr(row, name, None)
        if value is not None:
            kwargs[name] = _value(kind, value, enums) if kind else value
    return cls(**kwargs)


# How a value of the platform's own stored JSON becomes a constructor argument (`from_stored`).
_S_PLAIN, _S_TIME, _S_STRUCT, _S_MESSAGE, _S_ENUM, _S_OTHER = range(6)


@functools.cache
def _stored_plan(cls: type[Message]) -> dict[str, tuple[int, bool, Any]]:
    """field name -> (kind, repeated, enum names or the nested message class)."""
    from google.protobuf import message_factory

    plan: dict[str, tuple[int, bool, Any]] = {}
    for field in cls.DESCRIPTOR.fields:
        kind: int
        extra: Any = None
        message = field.message_type
        if message is not None and message.GetOptions().map_entry:
            kind = _S_OTHER
        elif message is not None and message.full_name == _TIMESTAMP:
            kind = _S_TIME
        elif message is not None and message.full_name == _STRUCT:
            kind = _S_STRUCT
        elif message is not None and message.full_name.startswith("google.protobuf."):
            kind = _S_OTHER
        elif message is not None:
            kind, extra = _S_MESSAGE, message_factory.GetMessageClass(message)
        elif field.enum_type is not None:
            kind, extra = _S_ENUM, frozenset(field.enum_type.values_by_name)
        else:
            kind = _S_PLAIN
        plan[field.name] = (kind, field.is_repeated, extra)
    return plan


def _stored_value(kind: int, value: Any, extra: Any) -> Any:
    if kind == _S_TIME:
        return _time(value)
    if kind == _S_MESSAGE:
        return _from_stored(extra, value)
    if kind == _S_ENUM:
        return value if value in extra or isinstance(value, int) else 0
    return value


def from_stored(cls: type[M], data: dict[str, Any]) -> M:
    """A message from JSON the platform wrote itself (a row's JSON columns, a step's state), as
    `json_format.ParseDict(data, cls(), ignore_unknown_fields=True)` reads it once empty values
    (None, "", [], {}) are dropped — unknown keys and enum names ignored — without its per-field
    reflection, which made it a tenth of a workflow execution's CPU. Timestamps are RFC 3339
    text or datetimes. Not for a client's input: ParseDict checks types and says where.
    Anything the constructor does not take as it is (an int64 as text, nanoseconds) is read
    by ParseDict after all."""
    try:
        return _from_stored(cls, data)
    except (TypeError, ValueError):
        return json_format.ParseDict(data, cls(), ignore_unknown_fields=True)


def _from_stored(cls: type[M], data: dict[str, Any]) -> M:
    plan = _stored_plan(cls)
    kwargs: dict[str, Any] = {}
    rest: dict[str, Any] = {}
    for name, value in data.items():
        if value is None or value == "" or value == [] or value == {}:
            continue
        step = plan.get(name)
        if step is None:
            continue
        kind, repeated, extra = step
        if kind == _S_OTHER:
            rest[name] = value
        elif kind == _S_PLAIN or kind == _S_STRUCT:
            kwargs[name] = value
        elif repeated:
            kwargs[name] = [_stored_value(kind, item, extra) for item in value]
        else:
            kwargs[name] = _stored_value(kind, value, extra)
    message = cls(**kwargs)
    if rest:  # maps and the other well-known types: rare, read by the reference parser
        json_format.ParseDict(rest, message, ignore_unknown_fields=True)
    return message


class RowMemo:
    """Messages of rows read lately, kept serialized and keyed by every value of the row: a hot
    row read again is parsed from its bytes (upb, in C) instead of converted field by field
    (JSON columns decoded, Structs filled in Python), which was half of a GET's own CPU. A
    changed row is a new key, so nothing here is ever stale, and each caller gets a message of
    its own. Rows whose values do not hash (a driver's dict for a JSON column) and messages
    over `max_bytes` are converted every time. Oldest entries go first once `entries` are held,
    so the memory is bounded by entries x (row + `max_bytes`)."""

    def __init__(self, entries: int = 2048, max_bytes: int = 8192) -> None:
        self.entries = entries
        self.max_bytes = max_bytes
        self._held: dict[tuple, bytes] = {}

    def message(self, cls: type[M], row: tuple, convert) -> M:
        """`convert(row)`, or the same message from the bytes kept of it."""
        key = (cls, row)
        try:
            data = self._held.get(key)
        except TypeError:  # an unhashable value
            return convert(row)
        if data is not None:
            return cls.FromString(data)
        message = convert(row)
        data = message.SerializeToString()
        if len(data) <= self.max_bytes:
            held = self._held
            if len(held) >= self.entries:
                try:
                    del held[next(iter(held))]
                except (KeyError, RuntimeError, StopIteration):  # another thread's eviction
                    pass
            held[key] = data
        return message

    def clear(self) -> None:
        self._held.clear()


class TupleReader:
    """Turns raw rows of known columns into messages of one type, planned once."""

    def __init__(self, cls: type[Message], columns: Sequence[str]) -> None:
        self.cls = cls
        by_name = {name: (kind, enums) for name, kind, enums in _plan(cls)}
        self.steps = [(i, name, *by_name[name]) for i, name in enumerate(columns)
                      if name in by_name]

    def __call__(self, row: tuple, **overrides: Any) -> Message:
        kwargs = {}
        for index, name, kind, enums in self.steps:
            value = row[index]
            if value is not None:
                kwargs[name] = _value(kind, value, enums) if kind else value
        kwargs.update(overrides)
        return self.cls(**kwargs)


def plain(value: Any) -> Any:
    """JSON from a Struct with integral numbers as integers (Struct numbers are all floats):
    `42`, never `42.0`. Past 2**53 a double no longer holds every integer, so it stays a float."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2 ** 53:
        return int(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


@functools.cache
def writable(cls: type[Message]) -> frozenset[str]:
    """The fields a client may set: every field that is not OUTPUT_ONLY."""
    return frozenset(f.name for f in cls.DESCRIPTOR.fields if _OUTPUT_ONLY not in behaviors(f))


def python_value(message: Message, field: FieldDescriptor) -> Any:
    value = getattr(message, field.name)
    target = field.message_type.full_name if field.message_type else ""
    if _is_map(field):
        if field.message_type.fields_by_name["value"].message_type is not None:
            return {k: json_format.MessageToDict(v, preserving_proto_field_name=True)
                    for k, v in value.items()}
        return dict(value)
    if field.is_repeated:
        if field.message_type is not None:
            return [json_format.MessageToDict(v, preserving_proto_field_name=True) for v in value]
        if field.enum_type is not None:
            return [field.enum_type.values_by_number[v].name for v in value]
        return list(value)
    if target == _TIMESTAMP:
        return value.ToDatetime(tzinfo=UTC) if value.seconds or value.nanos else None
    if target == _STRUCT:
        return json_format.MessageToDict(value)
    if field.message_type is not None:
        return json_format.MessageToDict(value, preserving_proto_field_name=True) \
            if message.HasField(field.name) else None
    if field.enum_type is not None:
        return field.enum_type.values_by_number[value].name
    return value


def changes(message: Message, writable: set[str] | frozenset[str], mask_paths: list[str] | None = None,
            body_name: str = "") -> dict[str, Any]:
    """The fields an update changes. One rule for every service (docs/contract.md, "Updates"):
    with an `update_mask`, exactly the fields it names; without one, the fields the body
    carries (AIP-134's implied mask). A field that must be settable to `false`/`0`/`""` through
    a plain PUT is `optional` in the contract (it has presence, so `{"active": false}` is
    carried); any field can be set to its default by naming it in the mask. A masked field that
    is not writable is INVALID_ARGUMENT; output-only fields in the body are ignored (clients
    echo back what they read).

    A REQUIRED field cannot be cleared: named in the mask with its empty value (proto3's "not
    sent", which the gateway cannot tell from `""`), it keeps its value. The OpenAPI document
    says so (a partial `<Resource>.Update` body where no field is required), so the request it
    allows is accepted."""
    fields = message.DESCRIPTOR.fields_by_name
    if mask_paths:
        unknown = [p for p in mask_paths if p not in writable]
        if unknown:
            raise invalid_field("update_mask", f"cannot update {', '.join(unknown)}; "
                                f"updatable: {', '.join(sorted(writable))}")
        names = [name for name in dict.fromkeys(mask_paths)
                 if not (_REQUIRED in behaviors(fields[name]) and _is_empty(message, fields[name]))]
    else:
        names = [f.name for f, _ in message.ListFields() if f.name in writable]
    return {name: python_value(message, fields[name]) for name in names}


def _is_empty(message: Message, field: FieldDescriptor) -> bool:
    """Whether `field` holds nothing: unset (with presence), or its default, or no items."""
    if field.is_repeated:
        return not len(getattr(message, field.name))
    if field.has_presence:
        if field.message_type is not None and field.message_type.full_name == _STRUCT:
            # An empty object is "not given", as for a REQUIRED Struct on create.
            return not message.HasField(field.name) or not len(getattr(message, field.name).fields)
        return not message.HasField(field.name)
    return not getattr(message, field.name)


def values(message: Message, writable: set[str] | frozenset[str]) -> dict[str, Any]:
    """Every writable field of a create request (defaults included)."""
    fields = message.DESCRIPTOR.fields_by_name
    return {name: python_value(message, fields[name]) for name in writable}
