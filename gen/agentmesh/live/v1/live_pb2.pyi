import datetime

from agentmesh.common.v1 import annotations_pb2 as _annotations_pb2
from google.api import annotations_pb2 as _annotations_pb2_1
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateTicketRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Ticket(_message.Message):
    __slots__ = ("ticket", "expires_at", "expires_in")
    TICKET_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_IN_FIELD_NUMBER: _ClassVar[int]
    ticket: str
    expires_at: _timestamp_pb2.Timestamp
    expires_in: int
    def __init__(self, ticket: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_in: _Optional[int] = ...) -> None: ...

class PublishEventRequest(_message.Message):
    __slots__ = ("tenant_id", "kind", "key", "type", "payload_json")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_JSON_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    kind: str
    key: str
    type: str
    payload_json: str
    def __init__(self, tenant_id: _Optional[str] = ..., kind: _Optional[str] = ..., key: _Optional[str] = ..., type: _Optional[str] = ..., payload_json: _Optional[str] = ...) -> None: ...

class PublishEventResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
