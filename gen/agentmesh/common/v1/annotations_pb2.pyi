from google.protobuf import descriptor_pb2 as _descriptor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RateClass(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RATE_CLASS_UNSPECIFIED: _ClassVar[RateClass]
    RATE_CLASS_CREDENTIALS: _ClassVar[RateClass]
    RATE_CLASS_UNLIMITED: _ClassVar[RateClass]
RATE_CLASS_UNSPECIFIED: RateClass
RATE_CLASS_CREDENTIALS: RateClass
RATE_CLASS_UNLIMITED: RateClass
AUTH_FIELD_NUMBER: _ClassVar[int]
auth: _descriptor.FieldDescriptor
HTTP_BODY_FIELD_NUMBER: _ClassVar[int]
http_body: _descriptor.FieldDescriptor
IDEMPOTENT_FIELD_NUMBER: _ClassVar[int]
idempotent: _descriptor.FieldDescriptor
ACCEPTED_FIELD_NUMBER: _ClassVar[int]
accepted: _descriptor.FieldDescriptor
FINAL_FIELD_NUMBER: _ClassVar[int]
final: _descriptor.FieldDescriptor
LIMITS_FIELD_NUMBER: _ClassVar[int]
limits: _descriptor.FieldDescriptor

class AuthRule(_message.Message):
    __slots__ = ("scope", "public", "internal", "rate_class")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_FIELD_NUMBER: _ClassVar[int]
    INTERNAL_FIELD_NUMBER: _ClassVar[int]
    RATE_CLASS_FIELD_NUMBER: _ClassVar[int]
    scope: str
    public: bool
    internal: bool
    rate_class: RateClass
    def __init__(self, scope: _Optional[str] = ..., public: _Optional[bool] = ..., internal: _Optional[bool] = ..., rate_class: _Optional[_Union[RateClass, str]] = ...) -> None: ...

class HttpBodyResponse(_message.Message):
    __slots__ = ("content_type", "message", "also")
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ALSO_FIELD_NUMBER: _ClassVar[int]
    content_type: str
    message: str
    also: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, content_type: _Optional[str] = ..., message: _Optional[str] = ..., also: _Optional[_Iterable[str]] = ...) -> None: ...

class FieldLimits(_message.Message):
    __slots__ = ("max_length", "max_items", "min_length", "pattern", "min_items", "minimum", "maximum", "reason")
    MAX_LENGTH_FIELD_NUMBER: _ClassVar[int]
    MAX_ITEMS_FIELD_NUMBER: _ClassVar[int]
    MIN_LENGTH_FIELD_NUMBER: _ClassVar[int]
    PATTERN_FIELD_NUMBER: _ClassVar[int]
    MIN_ITEMS_FIELD_NUMBER: _ClassVar[int]
    MINIMUM_FIELD_NUMBER: _ClassVar[int]
    MAXIMUM_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    max_length: int
    max_items: int
    min_length: int
    pattern: str
    min_items: int
    minimum: int
    maximum: int
    reason: str
    def __init__(self, max_length: _Optional[int] = ..., max_items: _Optional[int] = ..., min_length: _Optional[int] = ..., pattern: _Optional[str] = ..., min_items: _Optional[int] = ..., minimum: _Optional[int] = ..., maximum: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...
