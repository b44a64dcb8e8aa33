"""Bounds of free-text and repeated fields, declared in the protos and checked here.

A field carries `[(agentmesh.common.v1.limits) = {max_length: 2000}]` (or `min_length`,
`pattern`, `max_items`, `min_items`, `minimum`, `maximum`). `check(message)` refuses a message past any bound with
INVALID_ARGUMENT naming the field, which the gateway answers as 400. The OpenAPI generator emits
the same bounds (`maxLength`, `minLength`, `pattern`, `maxItems`, `minItems`, `maxProperties`,
`minimum`, `maximum`), so the published document states them and Schemathesis holds the two together.

Every enum field (nested, repeated, a map's values) must hold a number its enum defines: proto3
enums are open, so the transcoder and native gRPC clients can send any number (`_check_enums`).

The fields to look at are planned once per message type (a few descriptor reads), so a check
costs a handful of `len()` calls per request.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from google.api import field_behavior_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from agentmesh.common.v1 import annotations_pb2
from mesh.runtime.errors import InvalidArgument, invalid_field


@dataclass(frozen=True)
class _Bound:
    field: FieldDescriptor
    max_length: int  # 0 = none
    max_items: int  # 0 = none
    min_length: int  # 0 = none
    pattern: re.Pattern[str] | None
    min_items: int  # 0 = none
    nested: tuple["_Bound", ...] | None  # for message fields that hold bounded fields
    is_map: bool
    map_value_is_string: bool
    minimum: int | None = None
    maximum: int | None = None
    reason: str = ""


def _is_map(field: FieldDescriptor) -> bool:
    return (field.type == FieldDescriptor.TYPE_MESSAGE
            and field.message_type.GetOptions().map_entry)


@functools.cache
def _plan(descriptor: Descriptor) -> tuple[_Bound, ...]:
    bounds = []
    for field in descriptor.fields:
        limits = field.GetOptions().Extensions[annotations_pb2.limits]
        nested = None
        is_map = _is_map(field)
        if (field.type == FieldDescriptor.TYPE_MESSAGE and not is_map
                and field.message_type.full_name.startswith("agentmesh.")):
            nested = _plan(field.message_type) or None
        minimum = limits.minimum if limits.HasField("minimum") else None
        maximum = limits.maximum if limits.HasField("maximum") else None
        declared = (limits.max_length, limits.max_items, limits.min_length, limits.pattern,
                    limits.min_items, minimum is not None, maximum is not None)
        if any(declared) or nested:
            value_is_string = is_map and (
                field.message_type.fields_by_name["value"].type == FieldDescriptor.TYPE_STRING)
            bounds.append(_Bound(field, limits.max_length, limits.max_items, limits.min_length,
                                 re.compile(limits.pattern) if limits.pattern else None,
                                 limits.min_items, nested, is_map, value_is_string,
                                 minimum, maximum, limits.reason))
    return tuple(bounds)


def _refuse(bound: _Bound, path: str, problem: str) -> InvalidArgument:
    error = invalid_field(path, problem)
    if bound.reason:
        error = InvalidArgument(f"{path}: {problem}", reason=bound.reason,
                                field_violations=[(path, problem)])
    return error


def _text(path: str, text: str, bound: _Bound, item: bool = False) -> None:
    if bound.max_length and len(text) > bound.max_length:
        raise _refuse(bound, path, f"at most {bound.max_length} characters (got {len(text)})")
    if not text and not item:
        return  # proto3: an empty string is a field not sent; REQUIRED is the service's rule
    if len(text) < bound.min_length:
        raise _refuse(bound, path, f"at least {bound.min_length} characters")
    if bound.pattern is not None and not bound.pattern.search(text):
        raise _refuse(bound, path, f"must match {bound.pattern.pattern}")


def _number(path: str, value: int, bound: _Bound) -> None:
    if not value:
        return  # proto3: zero is a field not sent; REQUIRED is the service's rule
    if bound.minimum is not None and value < bound.minimum:
        raise _refuse(bound, path, f"at least {bound.minimum} (got {value})")
    if bound.maximum is not None and value > bound.maximum:
        raise _refuse(bound, path, f"at most {bound.maximum} (got {value})")


def _check(message: Message, plan: tuple[_Bound, ...], prefix: str) -> None:
    for bound in plan:
        name = bound.field.name
        path = prefix + name
        value = getattr(message, name)
        repeated = bound.field.is_repeated
        if repeated and bound.max_items and len(value) > bound.max_items:
            noun = "entries" if bound.is_map else "items"
            raise _refuse(bound, path, f"at most {bound.max_items} {noun} (got {len(value)})")
        if repeated and len(value) < bound.min_items:
            raise _refuse(bound, path, f"at least {bound.min_items} item(s)")
        if bound.is_map:
            for key, item in value.items():
                if bound.max_length and len(key) > bound.max_length:
                    raise _refuse(bound, path, f"keys of at most {bound.max_length} "
                                              f"characters (got {len(key)})")
                if bound.map_value_is_string:
                    _text(f"{path}.{key}", item, bound)
        elif repeated and bound.field.type == FieldDescriptor.TYPE_STRING:
            for index, item in enumerate(value):  # an empty item is an item, not "not sent"
                _text(f"{path}[{index}]", item, bound, item=True)
        elif isinstance(value, str):
            _text(path, value, bound)
        elif bound.minimum is not None or bound.maximum is not None:
            if repeated:
                for index, item in enumerate(value):
                    _number(f"{path}[{index}]", item, bound)
            elif isinstance(value, int) and not isinstance(value, bool):
                _number(path, value, bound)
        if bound.nested:
            if repeated:
                for index, item in enumerate(value):
                    _check(item, bound.nested, f"{path}[{index}].")
            elif message.HasField(name):
                _check(value, bound.nested, f"{path}.")


def check(message: Message, body: str = "") -> None:
    """Raises `InvalidArgument` (400) for the first field of `message` past its declared bound;
    nested `agentmesh` messages are checked too. Field names are relative to `message`, but for
    the fields of `body` (the request field a REST body fills, `agent` of `body: "agent"`): a
    REST client sent those at the top of its JSON, so they are named as it wrote them.

    In the body (`body: "*"`: the request; `body: "agent"`: the agent) the shape the OpenAPI
    document gives is held too, whatever an update mask names (`_check_given`), and every enum
    holds a number its enum defines (`_check_enums`)."""
    _check_enums(message, body)
    plan = _plan(message.DESCRIPTOR)
    if not body:
        _check(message, plan, "")
        return
    if body == "*":
        _check(message, plan, "")
        _check_body(message)
        return
    _check(message, tuple(b for b in plan if b.field.name != body), "")
    for bound in plan:
        if bound.field.name == body and bound.nested and message.HasField(body):
            _check(getattr(message, body), bound.nested, "")
    field = message.DESCRIPTOR.fields_by_name.get(body)
    if (field is not None and field.type == FieldDescriptor.TYPE_MESSAGE
            and not field.is_repeated and message.HasField(body)):
        _check_body(getattr(message, body))


# ---- enums hold defined numbers ----------------------------------------------------------------
# proto3 enums are open: the transcoder (and a native gRPC client) may send any number, and the
# generated classes keep it. A number the enum does not define is refused here, once for every
# RPC, before a handler can fail on it (`Enum.Name` raises) or store a value no client can name.

@dataclass(frozen=True)
class _EnumField:
    """A field of a message that is, or leads to, an enum: `numbers` are the defined numbers of
    an enum field (a map's enum values, a repeated enum's items), None for a message field
    (or a map of messages) whose type holds enums somewhere below."""
    field: FieldDescriptor
    numbers: frozenset[int] | None
    enum_name: str
    is_map: bool
    value: FieldDescriptor  # the field itself, or a map's `value` field


def _contract_message(descriptor: Descriptor) -> bool:
    return descriptor.full_name.startswith("agentmesh.")


@functools.cache
def _holds_enums(descriptor: Descriptor) -> bool:
    """Whether an enum field is reachable from a message of the contract (cycles allowed)."""
    seen, stack = {descriptor}, [descriptor]
    while stack:
        for field in stack.pop().fields:
            if field.type == FieldDescriptor.TYPE_ENUM:
                return True
            if field.type == FieldDescriptor.TYPE_MESSAGE and _contract_message(
                    field.message_type) and field.message_type not in seen:
                seen.add(field.message_type)
                stack.append(field.message_type)
    return False


@functools.cache
def _enum_plan(descriptor: Descriptor) -> tuple[_EnumField, ...]:
    plan = []
    for field in descriptor.fields:
        is_map = _is_map(field)
        value = field.message_type.fields_by_name["value"] if is_map else field
        if value.type == FieldDescriptor.TYPE_ENUM:
            enum = value.enum_type
            plan.append(_EnumField(field, frozenset(enum.values_by_number), enum.name, is_map,
                                   value))
        elif (value.type == FieldDescriptor.TYPE_MESSAGE and _contract_message(value.message_type)
              and _holds_enums(value.message_type)):
            plan.append(_EnumField(field, None, "", is_map, value))
    return tuple(plan)


def _undefined(path: str, item: _EnumField, number: int) -> InvalidArgument:
    names = ", ".join(item.value.enum_type.values_by_name)
    return invalid_field(path, f"{number} is not a value of {item.enum_name}; use one of {names}")


def _walk_enums(message: Message, plan: tuple[_EnumField, ...], prefix: str) -> None:
    for item in plan:
        name = item.field.name
        path = prefix + name
        value = getattr(message, name)
        if item.numbers is not None:
            if item.is_map:
                for key, number in value.items():
                    if number not in item.numbers:
                        raise _undefined(f"{path}.{key}", item, number)
            elif item.field.is_repeated:
                for index, number in enumerate(value):
                    if number not in item.numbers:
                        raise _undefined(f"{path}[{index}]", item, number)
            elif value not in item.numbers:
                raise _undefined(path, item, value)
            continue
        nested = _enum_plan(item.value.message_type)
        if item.is_map:
            for key, entry in value.items():
                _walk_enums(entry, nested, f"{path}.{key}.")
        elif item.field.is_repeated:
            for index, entry in enumerate(value):
                _walk_enums(entry, nested, f"{path}[{index}].")
        elif message.HasField(name):
            _walk_enums(value, nested, f"{path}.")


def _check_enums(message: Message, body: str) -> None:
    """Every enum of the request, nested ones too, holds a number its enum defines; the fields
    of a `body: "<field>"` are named as the REST client wrote them (at the top of its JSON)."""
    plan = _enum_plan(message.DESCRIPTOR)
    if not plan:
        return
    if not body or body == "*":
        _walk_enums(message, plan, "")
        return
    for item in plan:
        if item.field.name != body:
            _walk_enums(message, (item,), "")
        elif item.numbers is None and not item.field.is_repeated and message.HasField(body):
            _walk_enums(getattr(message, body), _enum_plan(item.value.message_type), "")
        else:
            _walk_enums(message, (item,), "")


# ---- what is given in a body has the shape the document states -------------------------------
_TIMESTAMP = "google.protobuf.Timestamp"
_STRUCT = "google.protobuf.Struct"


@dataclass(frozen=True)
class _Given:
    """A message field of a body whose value, when given, is checked: a Timestamp (given, it is
    a date-time), or a message of the contract (given, its REQUIRED fields are set, and its own
    message fields are checked in turn)."""
    field: FieldDescriptor
    required: tuple[FieldDescriptor, ...]  # of the nested message: set when it is given


def _required(descriptor: Descriptor) -> tuple[FieldDescriptor, ...]:
    """The REQUIRED fields of a message whose emptiness the gateway's message shows: strings,
    enums (zero is "not sent") and messages. A number or bool required by the document is
    present as a JSON key, which proto3 cannot tell from 0/false; INPUT_ONLY fields (a
    password) are required only on create, by the service."""
    out = []
    for field in descriptor.fields:
        kinds = set(field.GetOptions().Extensions[field_behavior_pb2.field_behavior])
        if (field_behavior_pb2.REQUIRED not in kinds or field_behavior_pb2.INPUT_ONLY in kinds
                or field.is_repeated):
            continue
        if field.type in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_ENUM,
                          FieldDescriptor.TYPE_MESSAGE):
            out.append(field)
    return tuple(out)


@functools.cache
def _given_plan(descriptor: Descriptor) -> tuple[_Given, ...]:
    plan = []
    for field in descriptor.fields:
        if field.type != FieldDescriptor.TYPE_MESSAGE or _is_map(field):
            continue
        name = field.message_type.full_name
        if name == _TIMESTAMP or name.startswith("agentmesh."):
            plan.append(_Given(field, _required(field.message_type) if name != _TIMESTAMP
                               else ()))
    return tuple(plan)


def _check_body(message: Message) -> None:
    """The top of a body may leave its REQUIRED fields out (a partial update, where `""` and
    `{}` are "not sent" too); below the top, given messages hold their shape (`_check_given`)."""
    _check_given(message, _given_plan(message.DESCRIPTOR), "")


def _is_unset(message: Message, field: FieldDescriptor) -> bool:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        if not message.HasField(field.name):
            return True
        if field.message_type.full_name == _STRUCT:  # an empty object is "not given"
            return not len(getattr(message, field.name).fields)
        return False
    return not getattr(message, field.name)


def _check_given(message: Message, plan: tuple[_Given, ...], prefix: str) -> None:
    for given in plan:
        name = given.field.name
        value = getattr(message, name)
        if given.field.is_repeated:
            items = [(f"{prefix}{name}[{i}]", item) for i, item in enumerate(value)]
        elif message.HasField(name):
            items = [(f"{prefix}{name}", value)]
        else:
            continue
        for path, item in items:
            if given.field.message_type.full_name == _TIMESTAMP:
                # The gateway reads a JSON object (`{}`) given for a Timestamp as an empty
                # one, the Unix epoch; a date-time string is what the document asks for.
                if not item.seconds and not item.nanos:
                    raise invalid_field(path, "must be an RFC 3339 date-time string, not "
                                        "an object nor the Unix epoch itself")
                continue
            for field in given.required:
                if _is_unset(item, field):
                    raise invalid_field(f"{path}.{field.name}", "is required")
            nested = _given_plan(given.field.message_type)
            if nested:
                _check_given(item, nested, f"{path}.")


@dataclass(frozen=True)
class When:
    """A rule of a message that depends on the value of one of its fields, stated once by the
    service that checks it and published by the OpenAPI generator as JSON Schema
    `if`/`then`: when `field` (an enum, by value name, or a string) holds one of `values`, the
    message's JSON must also match `then` (a JSON Schema, e.g. `{"required": ["http"]}`).

    A service lists its rules in `CONDITIONS` (full message name -> rules) of its `rules`
    module (`mesh.<service>.rules`), beside the tables its own validation reads."""
    field: str
    values: tuple[str, ...]
    then: dict
