import datetime

from agentmesh.common.v1 import annotations_pb2 as _annotations_pb2
from agentmesh.common.v1 import common_pb2 as _common_pb2
from google.api import annotations_pb2 as _annotations_pb2_1
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.api import httpbody_pb2 as _httpbody_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TemplateKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TEMPLATE_KIND_UNSPECIFIED: _ClassVar[TemplateKind]
    TEMPLATE_KIND_AGENT: _ClassVar[TemplateKind]
    TEMPLATE_KIND_WORKFLOW: _ClassVar[TemplateKind]
    TEMPLATE_KIND_TOOL: _ClassVar[TemplateKind]

class TemplateFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TEMPLATE_FORMAT_UNSPECIFIED: _ClassVar[TemplateFormat]
    TEMPLATE_FORMAT_JSON: _ClassVar[TemplateFormat]
    TEMPLATE_FORMAT_YAML: _ClassVar[TemplateFormat]
TEMPLATE_KIND_UNSPECIFIED: TemplateKind
TEMPLATE_KIND_AGENT: TemplateKind
TEMPLATE_KIND_WORKFLOW: TemplateKind
TEMPLATE_KIND_TOOL: TemplateKind
TEMPLATE_FORMAT_UNSPECIFIED: TemplateFormat
TEMPLATE_FORMAT_JSON: TemplateFormat
TEMPLATE_FORMAT_YAML: TemplateFormat

class TemplateParameter(_message.Message):
    __slots__ = ("name", "description", "type", "required", "default_value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    type: str
    required: bool
    default_value: _struct_pb2.Value
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., type: _Optional[str] = ..., required: _Optional[bool] = ..., default_value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...

class Template(_message.Message):
    __slots__ = ("id", "tenant_id", "name", "description", "kind", "category", "tags", "content", "parameters", "version", "created_by", "created_at", "updated_at", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    id: str
    tenant_id: str
    name: str
    description: str
    kind: TemplateKind
    category: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    content: _struct_pb2.Struct
    parameters: _containers.RepeatedCompositeFieldContainer[TemplateParameter]
    version: int
    created_by: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    labels: _containers.ScalarMap[str, int]
    def __init__(self, id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., kind: _Optional[_Union[TemplateKind, str]] = ..., category: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., content: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., parameters: _Optional[_Iterable[_Union[TemplateParameter, _Mapping]]] = ..., version: _Optional[int] = ..., created_by: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., labels: _Optional[_Mapping[str, int]] = ...) -> None: ...

class TemplateVersion(_message.Message):
    __slots__ = ("template_id", "version", "content", "parameters", "changelog", "created_by", "created_at", "labels")
    TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    CHANGELOG_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    template_id: str
    version: int
    content: _struct_pb2.Struct
    parameters: _containers.RepeatedCompositeFieldContainer[TemplateParameter]
    changelog: str
    created_by: str
    created_at: _timestamp_pb2.Timestamp
    labels: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, template_id: _Optional[str] = ..., version: _Optional[int] = ..., content: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., parameters: _Optional[_Iterable[_Union[TemplateParameter, _Mapping]]] = ..., changelog: _Optional[str] = ..., created_by: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., labels: _Optional[_Iterable[str]] = ...) -> None: ...

class ListTemplatesRequest(_message.Message):
    __slots__ = ("page", "page_size", "kind", "category", "tag", "search", "order_by")
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    SEARCH_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    page: int
    page_size: int
    kind: TemplateKind
    category: str
    tag: str
    search: str
    order_by: str
    def __init__(self, page: _Optional[int] = ..., page_size: _Optional[int] = ..., kind: _Optional[_Union[TemplateKind, str]] = ..., category: _Optional[str] = ..., tag: _Optional[str] = ..., search: _Optional[str] = ..., order_by: _Optional[str] = ...) -> None: ...

class ListTemplatesResponse(_message.Message):
    __slots__ = ("items", "total", "page", "page_size", "pages")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGES_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Template]
    total: int
    page: int
    page_size: int
    pages: int
    def __init__(self, items: _Optional[_Iterable[_Union[Template, _Mapping]]] = ..., total: _Optional[int] = ..., page: _Optional[int] = ..., page_size: _Optional[int] = ..., pages: _Optional[int] = ...) -> None: ...

class CreateTemplateRequest(_message.Message):
    __slots__ = ("template",)
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    template: Template
    def __init__(self, template: _Optional[_Union[Template, _Mapping]] = ...) -> None: ...

class GetTemplateRequest(_message.Message):
    __slots__ = ("template_id",)
    TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    template_id: str
    def __init__(self, template_id: _Optional[str] = ...) -> None: ...

class UpdateTemplateRequest(_message.Message):
    __slots__ = ("template_id", "template", "update_mask")
    TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    template_id: str
    template: Template
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, template_id: _Optional[str] = ..., template: _Optional[_Union[Template, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class DeleteTemplateRequest(_message.Message):
    __slots__ = ("template_id",)
    TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    template_id: str
    def __init__(self, template_id: _Optional[str] = ...) -> None: ...

class InstantiateTemplateRequest(_message.Message):
    __slots__ = ("template_id", "parameters", "create", "version", "label")
    TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    CREATE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    template_id: str
    parameters: _struct_pb2.Struct
    create: bool
    version: int
    label: str
    def __init__(self, template_id: _Optional[str] = ..., parameters: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., create: _Optional[bool] = ..., version: _Optional[int] = ..., label: _Optional[str] = ...) -> None: ...

class InstantiateTemplateResponse(_message.Message):
    __slots__ = ("result", "template_id", "version", "resource_kind", "resource_id")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_KIND_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    result: _struct_pb2.Struct
    template_id: str
    version: int
    resource_kind: TemplateKind
    resource_id: str
    def __init__(self, result: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., template_id: _Optional[str] = ..., version: _Optional[int] = ..., resource_kind: _Optional[_Union[TemplateKind, str]] = ..., resource_id: _Optional[str] = ...) -> None: ...

class PreviewTemplateRequest(_message.Message):
    __slots__ = ("template_id", "parameters", "version", "label")
    TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    template_id: str
    parameters: str
    version: int
    label: str
    def __init__(self, template_id: _Optional[str] = ..., parameters: _Optional[str] = ..., version: _Optional[int] = ..., label: _Optional[str] = ...) -> None: ...

class PreviewTemplateResponse(_message.Message):
    __slots__ = ("result", "template_id", "version", "resource_kind", "missing_parameters")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_KIND_FIELD_NUMBER: _ClassVar[int]
    MISSING_PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    result: _struct_pb2.Struct
    template_id: str
    version: int
    resource_kind: TemplateKind
    missing_parameters: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, result: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., template_id: _Optional[str] = ..., version: _Optional[int] = ..., resource_kind: _Optional[_Union[TemplateKind, str]] = ..., missing_parameters: _Optional[_Iterable[str]] = ...) -> None: ...

class ListTemplateVersionsRequest(_message.Message):
    __slots__ = ("page", "page_size", "template_id")
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    page: int
    page_size: int
    template_id: str
    def __init__(self, page: _Optional[int] = ..., page_size: _Optional[int] = ..., template_id: _Optional[str] = ...) -> None: ...

class ListTemplateVersionsResponse(_message.Message):
    __slots__ = ("items", "total", "page", "page_size", "pages")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGES_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[TemplateVersion]
    total: int
    page: int
    page_size: int
    pages: int
    def __init__(self, items: _Optional[_Iterable[_Union[TemplateVersion, _Mapping]]] = ..., total: _Optional[int] = ..., page: _Optional[int] = ..., page_size: _Optional[int] = ..., pages: _Optional[int] = ...) -> None: ...

class CreateTemplateVersionRequest(_message.Message):
    __slots__ = ("template_id", "template_version")
    TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    template_id: str
    template_version: TemplateVersion
    def __init__(self, template_id: _Optional[str] = ..., template_version: _Optional[_Union[TemplateVersion, _Mapping]] = ...) -> None: ...

class ImportTemplateRequest(_message.Message):
    __slots__ = ("format", "content", "name")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    format: TemplateFormat
    content: str
    name: str
    def __init__(self, format: _Optional[_Union[TemplateFormat, str]] = ..., content: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class ExportTemplateRequest(_message.Message):
    __slots__ = ("template_id", "format", "version", "label")
    TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    template_id: str
    format: TemplateFormat
    version: int
    label: str
    def __init__(self, template_id: _Optional[str] = ..., format: _Optional[_Union[TemplateFormat, str]] = ..., version: _Optional[int] = ..., label: _Optional[str] = ...) -> None: ...

class SetTemplateLabelRequest(_message.Message):
    __slots__ = ("template_id", "label", "version")
    TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    template_id: str
    label: str
    version: int
    def __init__(self, template_id: _Optional[str] = ..., label: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class DeleteTemplateLabelRequest(_message.Message):
    __slots__ = ("template_id", "label")
    TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    template_id: str
    label: str
    def __init__(self, template_id: _Optional[str] = ..., label: _Optional[str] = ...) -> None: ...
