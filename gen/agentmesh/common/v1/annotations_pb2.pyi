from google.protobuf import descriptor_pb2 as _descriptor_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor
AUTH_FIELD_NUMBER: _ClassVar[int]
auth: _descriptor.FieldDescriptor

class AuthRule(_message.Message):
    __slots__ = ("scope", "public", "internal")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_FIELD_NUMBER: _ClassVar[int]
    INTERNAL_FIELD_NUMBER: _ClassVar[int]
    scope: str
    public: bool
    internal: bool
    def __init__(self, scope: _Optional[str] = ..., public: _Optional[bool] = ..., internal: _Optional[bool] = ...) -> None: ...
