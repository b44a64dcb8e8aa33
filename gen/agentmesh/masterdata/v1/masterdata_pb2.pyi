import datetime

from agentmesh.common.v1 import annotations_pb2 as _annotations_pb2
from agentmesh.common.v1 import common_pb2 as _common_pb2
from google.api import annotations_pb2 as _annotations_pb2_1
from google.api import field_behavior_pb2 as _field_behavior_pb2
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

class ConstraintType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONSTRAINT_TYPE_UNSPECIFIED: _ClassVar[ConstraintType]
    CONSTRAINT_TYPE_RESOURCE_LIMIT: _ClassVar[ConstraintType]
    CONSTRAINT_TYPE_RATE_LIMIT: _ClassVar[ConstraintType]
    CONSTRAINT_TYPE_CONTENT_POLICY: _ClassVar[ConstraintType]
    CONSTRAINT_TYPE_COST_LIMIT: _ClassVar[ConstraintType]
    CONSTRAINT_TYPE_TIME_LIMIT: _ClassVar[ConstraintType]
    CONSTRAINT_TYPE_CUSTOM: _ClassVar[ConstraintType]
    CONSTRAINT_TYPE_MAX_TOKENS_PER_CALL: _ClassVar[ConstraintType]
    CONSTRAINT_TYPE_MAX_COST_PER_DAY: _ClassVar[ConstraintType]
    CONSTRAINT_TYPE_ALLOWED_TOOLS: _ClassVar[ConstraintType]
    CONSTRAINT_TYPE_DENIED_TOOLS: _ClassVar[ConstraintType]
    CONSTRAINT_TYPE_MAX_STEPS: _ClassVar[ConstraintType]
    CONSTRAINT_TYPE_TIMEOUT_SECONDS: _ClassVar[ConstraintType]
    CONSTRAINT_TYPE_REQUIRE_APPROVAL_FOR: _ClassVar[ConstraintType]

class ConstraintEnforcement(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONSTRAINT_ENFORCEMENT_UNSPECIFIED: _ClassVar[ConstraintEnforcement]
    CONSTRAINT_ENFORCEMENT_BLOCK: _ClassVar[ConstraintEnforcement]
    CONSTRAINT_ENFORCEMENT_WARN: _ClassVar[ConstraintEnforcement]
    CONSTRAINT_ENFORCEMENT_LOG: _ClassVar[ConstraintEnforcement]

class ModelType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_TYPE_UNSPECIFIED: _ClassVar[ModelType]
    MODEL_TYPE_CHAT: _ClassVar[ModelType]
    MODEL_TYPE_COMPLETION: _ClassVar[ModelType]
    MODEL_TYPE_EMBEDDING: _ClassVar[ModelType]

class ModelStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_STATUS_UNSPECIFIED: _ClassVar[ModelStatus]
    MODEL_STATUS_ACTIVE: _ClassVar[ModelStatus]
    MODEL_STATUS_INACTIVE: _ClassVar[ModelStatus]
    MODEL_STATUS_DEPRECATED: _ClassVar[ModelStatus]

class SecretType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SECRET_TYPE_UNSPECIFIED: _ClassVar[SecretType]
    SECRET_TYPE_API_KEY: _ClassVar[SecretType]
    SECRET_TYPE_PASSWORD: _ClassVar[SecretType]
    SECRET_TYPE_TOKEN: _ClassVar[SecretType]
    SECRET_TYPE_CERTIFICATE: _ClassVar[SecretType]
    SECRET_TYPE_GENERIC: _ClassVar[SecretType]
CONSTRAINT_TYPE_UNSPECIFIED: ConstraintType
CONSTRAINT_TYPE_RESOURCE_LIMIT: ConstraintType
CONSTRAINT_TYPE_RATE_LIMIT: ConstraintType
CONSTRAINT_TYPE_CONTENT_POLICY: ConstraintType
CONSTRAINT_TYPE_COST_LIMIT: ConstraintType
CONSTRAINT_TYPE_TIME_LIMIT: ConstraintType
CONSTRAINT_TYPE_CUSTOM: ConstraintType
CONSTRAINT_TYPE_MAX_TOKENS_PER_CALL: ConstraintType
CONSTRAINT_TYPE_MAX_COST_PER_DAY: ConstraintType
CONSTRAINT_TYPE_ALLOWED_TOOLS: ConstraintType
CONSTRAINT_TYPE_DENIED_TOOLS: ConstraintType
CONSTRAINT_TYPE_MAX_STEPS: ConstraintType
CONSTRAINT_TYPE_TIMEOUT_SECONDS: ConstraintType
CONSTRAINT_TYPE_REQUIRE_APPROVAL_FOR: ConstraintType
CONSTRAINT_ENFORCEMENT_UNSPECIFIED: ConstraintEnforcement
CONSTRAINT_ENFORCEMENT_BLOCK: ConstraintEnforcement
CONSTRAINT_ENFORCEMENT_WARN: ConstraintEnforcement
CONSTRAINT_ENFORCEMENT_LOG: ConstraintEnforcement
MODEL_TYPE_UNSPECIFIED: ModelType
MODEL_TYPE_CHAT: ModelType
MODEL_TYPE_COMPLETION: ModelType
MODEL_TYPE_EMBEDDING: ModelType
MODEL_STATUS_UNSPECIFIED: ModelStatus
MODEL_STATUS_ACTIVE: ModelStatus
MODEL_STATUS_INACTIVE: ModelStatus
MODEL_STATUS_DEPRECATED: ModelStatus
SECRET_TYPE_UNSPECIFIED: SecretType
SECRET_TYPE_API_KEY: SecretType
SECRET_TYPE_PASSWORD: SecretType
SECRET_TYPE_TOKEN: SecretType
SECRET_TYPE_CERTIFICATE: SecretType
SECRET_TYPE_GENERIC: SecretType

class FacetCount(_message.Message):
    __slots__ = ("name", "count", "description", "rules_schema", "requirements")
    NAME_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    RULES_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    REQUIREMENTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    count: int
    description: str
    rules_schema: _struct_pb2.Struct
    requirements: ProviderRequirements
    def __init__(self, name: _Optional[str] = ..., count: _Optional[int] = ..., description: _Optional[str] = ..., rules_schema: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., requirements: _Optional[_Union[ProviderRequirements, _Mapping]] = ...) -> None: ...

class ProviderRequirements(_message.Message):
    __slots__ = ("secret_required", "endpoint_url_required", "default_endpoint_url", "required_parameters")
    SECRET_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_URL_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_ENDPOINT_URL_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    secret_required: bool
    endpoint_url_required: bool
    default_endpoint_url: str
    required_parameters: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, secret_required: _Optional[bool] = ..., endpoint_url_required: _Optional[bool] = ..., default_endpoint_url: _Optional[str] = ..., required_parameters: _Optional[_Iterable[str]] = ...) -> None: ...

class Skill(_message.Message):
    __slots__ = ("id", "tenant_id", "name", "description", "category", "skill_type", "parameters", "tags", "created_by", "created_at", "updated_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    SKILL_TYPE_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    tenant_id: str
    name: str
    description: str
    category: str
    skill_type: str
    parameters: _struct_pb2.Struct
    tags: _containers.RepeatedScalarFieldContainer[str]
    created_by: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., category: _Optional[str] = ..., skill_type: _Optional[str] = ..., parameters: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., tags: _Optional[_Iterable[str]] = ..., created_by: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Constraint(_message.Message):
    __slots__ = ("id", "tenant_id", "name", "description", "constraint_type", "rules", "enforcement", "enabled", "created_by", "created_at", "updated_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CONSTRAINT_TYPE_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    ENFORCEMENT_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    tenant_id: str
    name: str
    description: str
    constraint_type: ConstraintType
    rules: _struct_pb2.Struct
    enforcement: ConstraintEnforcement
    enabled: bool
    created_by: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., constraint_type: _Optional[_Union[ConstraintType, str]] = ..., rules: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., enforcement: _Optional[_Union[ConstraintEnforcement, str]] = ..., enabled: _Optional[bool] = ..., created_by: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PromptVariable(_message.Message):
    __slots__ = ("name", "description", "required", "default_value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    required: bool
    default_value: str
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., required: _Optional[bool] = ..., default_value: _Optional[str] = ...) -> None: ...

class Prompt(_message.Message):
    __slots__ = ("id", "tenant_id", "name", "description", "category", "content", "variables", "version", "model_hint", "tags", "created_by", "created_at", "updated_at", "labels", "served_version", "placeholders")
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
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_HINT_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    SERVED_VERSION_FIELD_NUMBER: _ClassVar[int]
    PLACEHOLDERS_FIELD_NUMBER: _ClassVar[int]
    id: str
    tenant_id: str
    name: str
    description: str
    category: str
    content: str
    variables: _containers.RepeatedCompositeFieldContainer[PromptVariable]
    version: int
    model_hint: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    created_by: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    labels: _containers.ScalarMap[str, int]
    served_version: int
    placeholders: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., category: _Optional[str] = ..., content: _Optional[str] = ..., variables: _Optional[_Iterable[_Union[PromptVariable, _Mapping]]] = ..., version: _Optional[int] = ..., model_hint: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., created_by: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., labels: _Optional[_Mapping[str, int]] = ..., served_version: _Optional[int] = ..., placeholders: _Optional[_Iterable[str]] = ...) -> None: ...

class PromptVersion(_message.Message):
    __slots__ = ("prompt_id", "version", "content", "variables", "changelog", "created_by", "created_at", "labels")
    PROMPT_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    CHANGELOG_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    prompt_id: str
    version: int
    content: str
    variables: _containers.RepeatedCompositeFieldContainer[PromptVariable]
    changelog: str
    created_by: str
    created_at: _timestamp_pb2.Timestamp
    labels: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, prompt_id: _Optional[str] = ..., version: _Optional[int] = ..., content: _Optional[str] = ..., variables: _Optional[_Iterable[_Union[PromptVariable, _Mapping]]] = ..., changelog: _Optional[str] = ..., created_by: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., labels: _Optional[_Iterable[str]] = ...) -> None: ...

class ModelPricing(_message.Message):
    __slots__ = ("input_per_1m_tokens", "output_per_1m_tokens", "currency")
    INPUT_PER_1M_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_PER_1M_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    input_per_1m_tokens: float
    output_per_1m_tokens: float
    currency: str
    def __init__(self, input_per_1m_tokens: _Optional[float] = ..., output_per_1m_tokens: _Optional[float] = ..., currency: _Optional[str] = ...) -> None: ...

class Model(_message.Message):
    __slots__ = ("id", "tenant_id", "name", "description", "provider", "model_id", "model_type", "context_window", "max_output_tokens", "default_parameters", "pricing", "secret_ref", "endpoint_url", "status", "created_by", "created_at", "updated_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_TYPE_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_WINDOW_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    PRICING_FIELD_NUMBER: _ClassVar[int]
    SECRET_REF_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_URL_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    tenant_id: str
    name: str
    description: str
    provider: str
    model_id: str
    model_type: ModelType
    context_window: int
    max_output_tokens: int
    default_parameters: _struct_pb2.Struct
    pricing: ModelPricing
    secret_ref: str
    endpoint_url: str
    status: ModelStatus
    created_by: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., provider: _Optional[str] = ..., model_id: _Optional[str] = ..., model_type: _Optional[_Union[ModelType, str]] = ..., context_window: _Optional[int] = ..., max_output_tokens: _Optional[int] = ..., default_parameters: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., pricing: _Optional[_Union[ModelPricing, _Mapping]] = ..., secret_ref: _Optional[str] = ..., endpoint_url: _Optional[str] = ..., status: _Optional[_Union[ModelStatus, str]] = ..., created_by: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Secret(_message.Message):
    __slots__ = ("id", "tenant_id", "name", "description", "secret_type", "value", "value_hint", "version", "last_rotated_at", "expires_at", "tags", "created_by", "created_at", "updated_at", "fingerprint", "key_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    SECRET_TYPE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    VALUE_HINT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    LAST_ROTATED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    tenant_id: str
    name: str
    description: str
    secret_type: SecretType
    value: str
    value_hint: str
    version: int
    last_rotated_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    tags: _containers.RepeatedScalarFieldContainer[str]
    created_by: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    fingerprint: str
    key_id: str
    def __init__(self, id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., secret_type: _Optional[_Union[SecretType, str]] = ..., value: _Optional[str] = ..., value_hint: _Optional[str] = ..., version: _Optional[int] = ..., last_rotated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., tags: _Optional[_Iterable[str]] = ..., created_by: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., fingerprint: _Optional[str] = ..., key_id: _Optional[str] = ...) -> None: ...

class ListSkillsRequest(_message.Message):
    __slots__ = ("page", "page_size", "category", "skill_type", "tag", "search", "order_by")
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    SKILL_TYPE_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    SEARCH_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    page: int
    page_size: int
    category: str
    skill_type: str
    tag: str
    search: str
    order_by: str
    def __init__(self, page: _Optional[int] = ..., page_size: _Optional[int] = ..., category: _Optional[str] = ..., skill_type: _Optional[str] = ..., tag: _Optional[str] = ..., search: _Optional[str] = ..., order_by: _Optional[str] = ...) -> None: ...

class ListSkillsResponse(_message.Message):
    __slots__ = ("items", "total", "page", "page_size", "pages")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGES_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Skill]
    total: int
    page: int
    page_size: int
    pages: int
    def __init__(self, items: _Optional[_Iterable[_Union[Skill, _Mapping]]] = ..., total: _Optional[int] = ..., page: _Optional[int] = ..., page_size: _Optional[int] = ..., pages: _Optional[int] = ...) -> None: ...

class CreateSkillRequest(_message.Message):
    __slots__ = ("skill",)
    SKILL_FIELD_NUMBER: _ClassVar[int]
    skill: Skill
    def __init__(self, skill: _Optional[_Union[Skill, _Mapping]] = ...) -> None: ...

class GetSkillRequest(_message.Message):
    __slots__ = ("skill_id",)
    SKILL_ID_FIELD_NUMBER: _ClassVar[int]
    skill_id: str
    def __init__(self, skill_id: _Optional[str] = ...) -> None: ...

class UpdateSkillRequest(_message.Message):
    __slots__ = ("skill_id", "skill", "update_mask")
    SKILL_ID_FIELD_NUMBER: _ClassVar[int]
    SKILL_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    skill_id: str
    skill: Skill
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, skill_id: _Optional[str] = ..., skill: _Optional[_Union[Skill, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class DeleteSkillRequest(_message.Message):
    __slots__ = ("skill_id",)
    SKILL_ID_FIELD_NUMBER: _ClassVar[int]
    skill_id: str
    def __init__(self, skill_id: _Optional[str] = ...) -> None: ...

class ListSkillCategoriesRequest(_message.Message):
    __slots__ = ("page", "page_size")
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    page: int
    page_size: int
    def __init__(self, page: _Optional[int] = ..., page_size: _Optional[int] = ...) -> None: ...

class ListSkillCategoriesResponse(_message.Message):
    __slots__ = ("items", "total", "page", "page_size", "pages")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGES_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[FacetCount]
    total: int
    page: int
    page_size: int
    pages: int
    def __init__(self, items: _Optional[_Iterable[_Union[FacetCount, _Mapping]]] = ..., total: _Optional[int] = ..., page: _Optional[int] = ..., page_size: _Optional[int] = ..., pages: _Optional[int] = ...) -> None: ...

class SearchSkillsRequest(_message.Message):
    __slots__ = ("page", "page_size", "q", "category")
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    Q_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    page: int
    page_size: int
    q: str
    category: str
    def __init__(self, page: _Optional[int] = ..., page_size: _Optional[int] = ..., q: _Optional[str] = ..., category: _Optional[str] = ...) -> None: ...

class SearchSkillsResponse(_message.Message):
    __slots__ = ("items", "total", "page", "page_size", "pages")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGES_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Skill]
    total: int
    page: int
    page_size: int
    pages: int
    def __init__(self, items: _Optional[_Iterable[_Union[Skill, _Mapping]]] = ..., total: _Optional[int] = ..., page: _Optional[int] = ..., page_size: _Optional[int] = ..., pages: _Optional[int] = ...) -> None: ...

class ListConstraintsRequest(_message.Message):
    __slots__ = ("page", "page_size", "constraint_type", "enforcement", "enabled", "search", "order_by")
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    CONSTRAINT_TYPE_FIELD_NUMBER: _ClassVar[int]
    ENFORCEMENT_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    SEARCH_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    page: int
    page_size: int
    constraint_type: ConstraintType
    enforcement: ConstraintEnforcement
    enabled: bool
    search: str
    order_by: str
    def __init__(self, page: _Optional[int] = ..., page_size: _Optional[int] = ..., constraint_type: _Optional[_Union[ConstraintType, str]] = ..., enforcement: _Optional[_Union[ConstraintEnforcement, str]] = ..., enabled: _Optional[bool] = ..., search: _Optional[str] = ..., order_by: _Optional[str] = ...) -> None: ...

class ListConstraintsResponse(_message.Message):
    __slots__ = ("items", "total", "page", "page_size", "pages")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGES_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Constraint]
    total: int
    page: int
    page_size: int
    pages: int
    def __init__(self, items: _Optional[_Iterable[_Union[Constraint, _Mapping]]] = ..., total: _Optional[int] = ..., page: _Optional[int] = ..., page_size: _Optional[int] = ..., pages: _Optional[int] = ...) -> None: ...

class CreateConstraintRequest(_message.Message):
    __slots__ = ("constraint",)
    CONSTRAINT_FIELD_NUMBER: _ClassVar[int]
    constraint: Constraint
    def __init__(self, constraint: _Optional[_Union[Constraint, _Mapping]] = ...) -> None: ...

class GetConstraintRequest(_message.Message):
    __slots__ = ("constraint_id",)
    CONSTRAINT_ID_FIELD_NUMBER: _ClassVar[int]
    constraint_id: str
    def __init__(self, constraint_id: _Optional[str] = ...) -> None: ...

class UpdateConstraintRequest(_message.Message):
    __slots__ = ("constraint_id", "constraint", "update_mask")
    CONSTRAINT_ID_FIELD_NUMBER: _ClassVar[int]
    CONSTRAINT_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    constraint_id: str
    constraint: Constraint
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, constraint_id: _Optional[str] = ..., constraint: _Optional[_Union[Constraint, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class DeleteConstraintRequest(_message.Message):
    __slots__ = ("constraint_id",)
    CONSTRAINT_ID_FIELD_NUMBER: _ClassVar[int]
    constraint_id: str
    def __init__(self, constraint_id: _Optional[str] = ...) -> None: ...

class ListConstraintTypesRequest(_message.Message):
    __slots__ = ("page", "page_size")
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    page: int
    page_size: int
    def __init__(self, page: _Optional[int] = ..., page_size: _Optional[int] = ...) -> None: ...

class ListConstraintTypesResponse(_message.Message):
    __slots__ = ("items", "total", "page", "page_size", "pages")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGES_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[FacetCount]
    total: int
    page: int
    page_size: int
    pages: int
    def __init__(self, items: _Optional[_Iterable[_Union[FacetCount, _Mapping]]] = ..., total: _Optional[int] = ..., page: _Optional[int] = ..., page_size: _Optional[int] = ..., pages: _Optional[int] = ...) -> None: ...

class ListPromptsRequest(_message.Message):
    __slots__ = ("page", "page_size", "category", "tag", "search", "order_by")
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    SEARCH_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    page: int
    page_size: int
    category: str
    tag: str
    search: str
    order_by: str
    def __init__(self, page: _Optional[int] = ..., page_size: _Optional[int] = ..., category: _Optional[str] = ..., tag: _Optional[str] = ..., search: _Optional[str] = ..., order_by: _Optional[str] = ...) -> None: ...

class ListPromptsResponse(_message.Message):
    __slots__ = ("items", "total", "page", "page_size", "pages")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGES_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Prompt]
    total: int
    page: int
    page_size: int
    pages: int
    def __init__(self, items: _Optional[_Iterable[_Union[Prompt, _Mapping]]] = ..., total: _Optional[int] = ..., page: _Optional[int] = ..., page_size: _Optional[int] = ..., pages: _Optional[int] = ...) -> None: ...

class CreatePromptRequest(_message.Message):
    __slots__ = ("prompt",)
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    prompt: Prompt
    def __init__(self, prompt: _Optional[_Union[Prompt, _Mapping]] = ...) -> None: ...

class GetPromptRequest(_message.Message):
    __slots__ = ("prompt_id", "label", "version")
    PROMPT_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    prompt_id: str
    label: str
    version: int
    def __init__(self, prompt_id: _Optional[str] = ..., label: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class UpdatePromptRequest(_message.Message):
    __slots__ = ("prompt_id", "prompt", "update_mask")
    PROMPT_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    prompt_id: str
    prompt: Prompt
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, prompt_id: _Optional[str] = ..., prompt: _Optional[_Union[Prompt, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class DeletePromptRequest(_message.Message):
    __slots__ = ("prompt_id",)
    PROMPT_ID_FIELD_NUMBER: _ClassVar[int]
    prompt_id: str
    def __init__(self, prompt_id: _Optional[str] = ...) -> None: ...

class ListPromptCategoriesRequest(_message.Message):
    __slots__ = ("page", "page_size")
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    page: int
    page_size: int
    def __init__(self, page: _Optional[int] = ..., page_size: _Optional[int] = ...) -> None: ...

class ListPromptCategoriesResponse(_message.Message):
    __slots__ = ("items", "total", "page", "page_size", "pages")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGES_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[FacetCount]
    total: int
    page: int
    page_size: int
    pages: int
    def __init__(self, items: _Optional[_Iterable[_Union[FacetCount, _Mapping]]] = ..., total: _Optional[int] = ..., page: _Optional[int] = ..., page_size: _Optional[int] = ..., pages: _Optional[int] = ...) -> None: ...

class ListPromptVersionsRequest(_message.Message):
    __slots__ = ("page", "page_size", "prompt_id")
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PROMPT_ID_FIELD_NUMBER: _ClassVar[int]
    page: int
    page_size: int
    prompt_id: str
    def __init__(self, page: _Optional[int] = ..., page_size: _Optional[int] = ..., prompt_id: _Optional[str] = ...) -> None: ...

class ListPromptVersionsResponse(_message.Message):
    __slots__ = ("items", "total", "page", "page_size", "pages")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGES_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[PromptVersion]
    total: int
    page: int
    page_size: int
    pages: int
    def __init__(self, items: _Optional[_Iterable[_Union[PromptVersion, _Mapping]]] = ..., total: _Optional[int] = ..., page: _Optional[int] = ..., page_size: _Optional[int] = ..., pages: _Optional[int] = ...) -> None: ...

class CreatePromptVersionRequest(_message.Message):
    __slots__ = ("prompt_id", "prompt_version")
    PROMPT_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_VERSION_FIELD_NUMBER: _ClassVar[int]
    prompt_id: str
    prompt_version: PromptVersion
    def __init__(self, prompt_id: _Optional[str] = ..., prompt_version: _Optional[_Union[PromptVersion, _Mapping]] = ...) -> None: ...

class GetPromptVersionRequest(_message.Message):
    __slots__ = ("prompt_id", "version")
    PROMPT_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    prompt_id: str
    version: int
    def __init__(self, prompt_id: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class DeletePromptVersionRequest(_message.Message):
    __slots__ = ("prompt_id", "version")
    PROMPT_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    prompt_id: str
    version: int
    def __init__(self, prompt_id: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class SetPromptLabelRequest(_message.Message):
    __slots__ = ("prompt_id", "label", "version")
    PROMPT_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    prompt_id: str
    label: str
    version: int
    def __init__(self, prompt_id: _Optional[str] = ..., label: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class DeletePromptLabelRequest(_message.Message):
    __slots__ = ("prompt_id", "label")
    PROMPT_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    prompt_id: str
    label: str
    def __init__(self, prompt_id: _Optional[str] = ..., label: _Optional[str] = ...) -> None: ...

class RenderPromptRequest(_message.Message):
    __slots__ = ("prompt_id", "variables", "label", "version")
    class VariablesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PROMPT_ID_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    prompt_id: str
    variables: _containers.ScalarMap[str, str]
    label: str
    version: int
    def __init__(self, prompt_id: _Optional[str] = ..., variables: _Optional[_Mapping[str, str]] = ..., label: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class RenderPromptResponse(_message.Message):
    __slots__ = ("prompt_id", "version", "content")
    PROMPT_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    prompt_id: str
    version: int
    content: str
    def __init__(self, prompt_id: _Optional[str] = ..., version: _Optional[int] = ..., content: _Optional[str] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ("page", "page_size", "provider", "model_type", "status", "search", "order_by")
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_TYPE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SEARCH_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    page: int
    page_size: int
    provider: str
    model_type: ModelType
    status: ModelStatus
    search: str
    order_by: str
    def __init__(self, page: _Optional[int] = ..., page_size: _Optional[int] = ..., provider: _Optional[str] = ..., model_type: _Optional[_Union[ModelType, str]] = ..., status: _Optional[_Union[ModelStatus, str]] = ..., search: _Optional[str] = ..., order_by: _Optional[str] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("items", "total", "page", "page_size", "pages")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGES_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Model]
    total: int
    page: int
    page_size: int
    pages: int
    def __init__(self, items: _Optional[_Iterable[_Union[Model, _Mapping]]] = ..., total: _Optional[int] = ..., page: _Optional[int] = ..., page_size: _Optional[int] = ..., pages: _Optional[int] = ...) -> None: ...

class CreateModelRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: Model
    def __init__(self, model: _Optional[_Union[Model, _Mapping]] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ("model_id",)
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    def __init__(self, model_id: _Optional[str] = ...) -> None: ...

class UpdateModelRequest(_message.Message):
    __slots__ = ("model_id", "model", "update_mask")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    model: Model
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, model_id: _Optional[str] = ..., model: _Optional[_Union[Model, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class DeleteModelRequest(_message.Message):
    __slots__ = ("model_id",)
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    def __init__(self, model_id: _Optional[str] = ...) -> None: ...

class ListModelProvidersRequest(_message.Message):
    __slots__ = ("page", "page_size")
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    page: int
    page_size: int
    def __init__(self, page: _Optional[int] = ..., page_size: _Optional[int] = ...) -> None: ...

class ListModelProvidersResponse(_message.Message):
    __slots__ = ("items", "total", "page", "page_size", "pages")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGES_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[FacetCount]
    total: int
    page: int
    page_size: int
    pages: int
    def __init__(self, items: _Optional[_Iterable[_Union[FacetCount, _Mapping]]] = ..., total: _Optional[int] = ..., page: _Optional[int] = ..., page_size: _Optional[int] = ..., pages: _Optional[int] = ...) -> None: ...

class ListSecretsRequest(_message.Message):
    __slots__ = ("page", "page_size", "secret_type", "tag", "search", "order_by")
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    SECRET_TYPE_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    SEARCH_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    page: int
    page_size: int
    secret_type: SecretType
    tag: str
    search: str
    order_by: str
    def __init__(self, page: _Optional[int] = ..., page_size: _Optional[int] = ..., secret_type: _Optional[_Union[SecretType, str]] = ..., tag: _Optional[str] = ..., search: _Optional[str] = ..., order_by: _Optional[str] = ...) -> None: ...

class ListSecretsResponse(_message.Message):
    __slots__ = ("items", "total", "page", "page_size", "pages")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGES_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Secret]
    total: int
    page: int
    page_size: int
    pages: int
    def __init__(self, items: _Optional[_Iterable[_Union[Secret, _Mapping]]] = ..., total: _Optional[int] = ..., page: _Optional[int] = ..., page_size: _Optional[int] = ..., pages: _Optional[int] = ...) -> None: ...

class CreateSecretRequest(_message.Message):
    __slots__ = ("secret",)
    SECRET_FIELD_NUMBER: _ClassVar[int]
    secret: Secret
    def __init__(self, secret: _Optional[_Union[Secret, _Mapping]] = ...) -> None: ...

class GetSecretRequest(_message.Message):
    __slots__ = ("secret_id",)
    SECRET_ID_FIELD_NUMBER: _ClassVar[int]
    secret_id: str
    def __init__(self, secret_id: _Optional[str] = ...) -> None: ...

class UpdateSecretRequest(_message.Message):
    __slots__ = ("secret_id", "secret", "update_mask")
    SECRET_ID_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    secret_id: str
    secret: Secret
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, secret_id: _Optional[str] = ..., secret: _Optional[_Union[Secret, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class DeleteSecretRequest(_message.Message):
    __slots__ = ("secret_id",)
    SECRET_ID_FIELD_NUMBER: _ClassVar[int]
    secret_id: str
    def __init__(self, secret_id: _Optional[str] = ...) -> None: ...

class RevealSecretRequest(_message.Message):
    __slots__ = ("secret_id", "requested_by", "purpose")
    SECRET_ID_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    secret_id: str
    requested_by: str
    purpose: str
    def __init__(self, secret_id: _Optional[str] = ..., requested_by: _Optional[str] = ..., purpose: _Optional[str] = ...) -> None: ...

class RevealSecretResponse(_message.Message):
    __slots__ = ("secret_id", "name", "value", "version", "secret_type")
    SECRET_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SECRET_TYPE_FIELD_NUMBER: _ClassVar[int]
    secret_id: str
    name: str
    value: str
    version: int
    secret_type: SecretType
    def __init__(self, secret_id: _Optional[str] = ..., name: _Optional[str] = ..., value: _Optional[str] = ..., version: _Optional[int] = ..., secret_type: _Optional[_Union[SecretType, str]] = ...) -> None: ...
