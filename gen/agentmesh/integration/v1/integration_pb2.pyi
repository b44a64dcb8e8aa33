import datetime

from agentmesh.common.v1 import annotations_pb2 as _annotations_pb2
from agentmesh.common.v1 import common_pb2 as _common_pb2
from google.api import annotations_pb2 as _annotations_pb2_1
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.api import httpbody_pb2 as _httpbody_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ExportFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXPORT_FORMAT_UNSPECIFIED: _ClassVar[ExportFormat]
    EXPORT_FORMAT_JSON: _ClassVar[ExportFormat]
    EXPORT_FORMAT_YAML: _ClassVar[ExportFormat]

class ImportMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IMPORT_MODE_UNSPECIFIED: _ClassVar[ImportMode]
    IMPORT_MODE_SKIP_EXISTING: _ClassVar[ImportMode]
    IMPORT_MODE_OVERWRITE: _ClassVar[ImportMode]
    IMPORT_MODE_FAIL_ON_EXISTING: _ClassVar[ImportMode]
    IMPORT_MODE_RENAME: _ClassVar[ImportMode]

class AuthType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUTH_TYPE_UNSPECIFIED: _ClassVar[AuthType]
    AUTH_TYPE_NONE: _ClassVar[AuthType]
    AUTH_TYPE_API_KEY: _ClassVar[AuthType]
    AUTH_TYPE_BEARER: _ClassVar[AuthType]
    AUTH_TYPE_BASIC: _ClassVar[AuthType]
    AUTH_TYPE_OAUTH2: _ClassVar[AuthType]
    AUTH_TYPE_AWS_SIGV4: _ClassVar[AuthType]
EXPORT_FORMAT_UNSPECIFIED: ExportFormat
EXPORT_FORMAT_JSON: ExportFormat
EXPORT_FORMAT_YAML: ExportFormat
IMPORT_MODE_UNSPECIFIED: ImportMode
IMPORT_MODE_SKIP_EXISTING: ImportMode
IMPORT_MODE_OVERWRITE: ImportMode
IMPORT_MODE_FAIL_ON_EXISTING: ImportMode
IMPORT_MODE_RENAME: ImportMode
AUTH_TYPE_UNSPECIFIED: AuthType
AUTH_TYPE_NONE: AuthType
AUTH_TYPE_API_KEY: AuthType
AUTH_TYPE_BEARER: AuthType
AUTH_TYPE_BASIC: AuthType
AUTH_TYPE_OAUTH2: AuthType
AUTH_TYPE_AWS_SIGV4: AuthType

class PublishPlatformEventRequest(_message.Message):
    __slots__ = ("event", "data", "event_id")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    event: str
    data: _struct_pb2.Struct
    event_id: str
    def __init__(self, event: _Optional[str] = ..., data: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., event_id: _Optional[str] = ...) -> None: ...

class PublishPlatformEventResponse(_message.Message):
    __slots__ = ("deliveries",)
    DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    deliveries: int
    def __init__(self, deliveries: _Optional[int] = ...) -> None: ...

class EntityResult(_message.Message):
    __slots__ = ("entity_type", "name", "id", "action", "error", "original_name")
    ENTITY_TYPE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_NAME_FIELD_NUMBER: _ClassVar[int]
    entity_type: str
    name: str
    id: str
    action: str
    error: str
    original_name: str
    def __init__(self, entity_type: _Optional[str] = ..., name: _Optional[str] = ..., id: _Optional[str] = ..., action: _Optional[str] = ..., error: _Optional[str] = ..., original_name: _Optional[str] = ...) -> None: ...

class BatchItemResult(_message.Message):
    __slots__ = ("index", "id", "error", "status", "name")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    index: int
    id: str
    error: str
    status: str
    name: str
    def __init__(self, index: _Optional[int] = ..., id: _Optional[str] = ..., error: _Optional[str] = ..., status: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class DependencyStatus(_message.Message):
    __slots__ = ("name", "status", "latency_ms")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    name: str
    status: str
    latency_ms: float
    def __init__(self, name: _Optional[str] = ..., status: _Optional[str] = ..., latency_ms: _Optional[float] = ...) -> None: ...

class IntegrationStatus(_message.Message):
    __slots__ = ("status", "services", "active_webhooks", "api_connections", "last_sync_at", "last_import_at", "last_export_at", "timestamp")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_WEBHOOKS_FIELD_NUMBER: _ClassVar[int]
    API_CONNECTIONS_FIELD_NUMBER: _ClassVar[int]
    LAST_SYNC_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_IMPORT_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_EXPORT_AT_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    status: str
    services: _containers.RepeatedCompositeFieldContainer[DependencyStatus]
    active_webhooks: int
    api_connections: int
    last_sync_at: _timestamp_pb2.Timestamp
    last_import_at: _timestamp_pb2.Timestamp
    last_export_at: _timestamp_pb2.Timestamp
    timestamp: _timestamp_pb2.Timestamp
    def __init__(self, status: _Optional[str] = ..., services: _Optional[_Iterable[_Union[DependencyStatus, _Mapping]]] = ..., active_webhooks: _Optional[int] = ..., api_connections: _Optional[int] = ..., last_sync_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_import_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_export_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Webhook(_message.Message):
    __slots__ = ("id", "tenant_id", "name", "url", "events", "secret", "secret_hint", "active", "created_at", "updated_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    SECRET_HINT_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    tenant_id: str
    name: str
    url: str
    events: _containers.RepeatedScalarFieldContainer[str]
    secret: str
    secret_hint: str
    active: bool
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., name: _Optional[str] = ..., url: _Optional[str] = ..., events: _Optional[_Iterable[str]] = ..., secret: _Optional[str] = ..., secret_hint: _Optional[str] = ..., active: _Optional[bool] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ApiConnection(_message.Message):
    __slots__ = ("id", "tenant_id", "name", "base_url", "auth_type", "secret_ref", "headers", "auth_param", "created_at", "updated_at")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    BASE_URL_FIELD_NUMBER: _ClassVar[int]
    AUTH_TYPE_FIELD_NUMBER: _ClassVar[int]
    SECRET_REF_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    AUTH_PARAM_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    tenant_id: str
    name: str
    base_url: str
    auth_type: AuthType
    secret_ref: str
    headers: _containers.ScalarMap[str, str]
    auth_param: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., name: _Optional[str] = ..., base_url: _Optional[str] = ..., auth_type: _Optional[_Union[AuthType, str]] = ..., secret_ref: _Optional[str] = ..., headers: _Optional[_Mapping[str, str]] = ..., auth_param: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateAgentFromTemplateRequest(_message.Message):
    __slots__ = ("template_id", "name", "parameters", "template_version", "deploy", "environment")
    TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    DEPLOY_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    template_id: str
    name: str
    parameters: _struct_pb2.Struct
    template_version: int
    deploy: bool
    environment: str
    def __init__(self, template_id: _Optional[str] = ..., name: _Optional[str] = ..., parameters: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., template_version: _Optional[int] = ..., deploy: _Optional[bool] = ..., environment: _Optional[str] = ...) -> None: ...

class CreateAgentFromTemplateResponse(_message.Message):
    __slots__ = ("agent_id", "name", "template_id", "template_version", "status", "deployed", "created_at")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DEPLOYED_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    name: str
    template_id: str
    template_version: int
    status: str
    deployed: bool
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, agent_id: _Optional[str] = ..., name: _Optional[str] = ..., template_id: _Optional[str] = ..., template_version: _Optional[int] = ..., status: _Optional[str] = ..., deployed: _Optional[bool] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class DeployAgentWorkflowRequest(_message.Message):
    __slots__ = ("agent_id", "workflow_id", "environment", "config", "agent", "workflow")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    workflow_id: str
    environment: str
    config: _struct_pb2.Struct
    agent: _struct_pb2.Struct
    workflow: _struct_pb2.Struct
    def __init__(self, agent_id: _Optional[str] = ..., workflow_id: _Optional[str] = ..., environment: _Optional[str] = ..., config: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., agent: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., workflow: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class DeployAgentWorkflowResponse(_message.Message):
    __slots__ = ("agent_id", "workflow_id", "environment", "agent_status", "workflow_status", "deployed_at", "message", "agent_created", "workflow_created")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    AGENT_STATUS_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_STATUS_FIELD_NUMBER: _ClassVar[int]
    DEPLOYED_AT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    AGENT_CREATED_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_CREATED_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    workflow_id: str
    environment: str
    agent_status: str
    workflow_status: str
    deployed_at: _timestamp_pb2.Timestamp
    message: str
    agent_created: bool
    workflow_created: bool
    def __init__(self, agent_id: _Optional[str] = ..., workflow_id: _Optional[str] = ..., environment: _Optional[str] = ..., agent_status: _Optional[str] = ..., workflow_status: _Optional[str] = ..., deployed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., message: _Optional[str] = ..., agent_created: _Optional[bool] = ..., workflow_created: _Optional[bool] = ...) -> None: ...

class IntegrateExternalToolRequest(_message.Message):
    __slots__ = ("name", "description", "endpoint_url", "http_method", "api_connection_id", "input_schema", "output_schema", "config", "deploy", "openapi", "openapi_url")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_URL_FIELD_NUMBER: _ClassVar[int]
    HTTP_METHOD_FIELD_NUMBER: _ClassVar[int]
    API_CONNECTION_ID_FIELD_NUMBER: _ClassVar[int]
    INPUT_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    DEPLOY_FIELD_NUMBER: _ClassVar[int]
    OPENAPI_FIELD_NUMBER: _ClassVar[int]
    OPENAPI_URL_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    endpoint_url: str
    http_method: str
    api_connection_id: str
    input_schema: _struct_pb2.Struct
    output_schema: _struct_pb2.Struct
    config: _struct_pb2.Struct
    deploy: bool
    openapi: _struct_pb2.Struct
    openapi_url: str
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., endpoint_url: _Optional[str] = ..., http_method: _Optional[str] = ..., api_connection_id: _Optional[str] = ..., input_schema: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., output_schema: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., config: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., deploy: _Optional[bool] = ..., openapi: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., openapi_url: _Optional[str] = ...) -> None: ...

class RegisteredTool(_message.Message):
    __slots__ = ("tool_id", "name", "method", "url")
    TOOL_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    tool_id: str
    name: str
    method: str
    url: str
    def __init__(self, tool_id: _Optional[str] = ..., name: _Optional[str] = ..., method: _Optional[str] = ..., url: _Optional[str] = ...) -> None: ...

class IntegrateExternalToolResponse(_message.Message):
    __slots__ = ("tool_id", "name", "status", "deployed", "created_at", "tools")
    TOOL_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DEPLOYED_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    tool_id: str
    name: str
    status: str
    deployed: bool
    created_at: _timestamp_pb2.Timestamp
    tools: _containers.RepeatedCompositeFieldContainer[RegisteredTool]
    def __init__(self, tool_id: _Optional[str] = ..., name: _Optional[str] = ..., status: _Optional[str] = ..., deployed: _Optional[bool] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., tools: _Optional[_Iterable[_Union[RegisteredTool, _Mapping]]] = ...) -> None: ...

class SyncMasterDataRequest(_message.Message):
    __slots__ = ("api_connection_id", "entity_types", "mode", "dry_run", "document", "path")
    API_CONNECTION_ID_FIELD_NUMBER: _ClassVar[int]
    ENTITY_TYPES_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    api_connection_id: str
    entity_types: _containers.RepeatedScalarFieldContainer[str]
    mode: ImportMode
    dry_run: bool
    document: _struct_pb2.Struct
    path: str
    def __init__(self, api_connection_id: _Optional[str] = ..., entity_types: _Optional[_Iterable[str]] = ..., mode: _Optional[_Union[ImportMode, str]] = ..., dry_run: _Optional[bool] = ..., document: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., path: _Optional[str] = ...) -> None: ...

class SyncMasterDataResponse(_message.Message):
    __slots__ = ("created", "updated", "skipped", "failed", "results", "dry_run", "synced_at")
    CREATED_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    SYNCED_AT_FIELD_NUMBER: _ClassVar[int]
    created: int
    updated: int
    skipped: int
    failed: int
    results: _containers.RepeatedCompositeFieldContainer[EntityResult]
    dry_run: bool
    synced_at: _timestamp_pb2.Timestamp
    def __init__(self, created: _Optional[int] = ..., updated: _Optional[int] = ..., skipped: _Optional[int] = ..., failed: _Optional[int] = ..., results: _Optional[_Iterable[_Union[EntityResult, _Mapping]]] = ..., dry_run: _Optional[bool] = ..., synced_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ExportDataRequest(_message.Message):
    __slots__ = ("entity_types", "ids", "format")
    ENTITY_TYPES_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    entity_types: _containers.RepeatedScalarFieldContainer[str]
    ids: _containers.RepeatedScalarFieldContainer[str]
    format: ExportFormat
    def __init__(self, entity_types: _Optional[_Iterable[str]] = ..., ids: _Optional[_Iterable[str]] = ..., format: _Optional[_Union[ExportFormat, str]] = ...) -> None: ...

class ImportDataRequest(_message.Message):
    __slots__ = ("data", "mode", "dry_run")
    DATA_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    data: _struct_pb2.Struct
    mode: ImportMode
    dry_run: bool
    def __init__(self, data: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., mode: _Optional[_Union[ImportMode, str]] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class ImportDataResponse(_message.Message):
    __slots__ = ("created", "updated", "skipped", "failed", "results", "dry_run")
    CREATED_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    created: int
    updated: int
    skipped: int
    failed: int
    results: _containers.RepeatedCompositeFieldContainer[EntityResult]
    dry_run: bool
    def __init__(self, created: _Optional[int] = ..., updated: _Optional[int] = ..., skipped: _Optional[int] = ..., failed: _Optional[int] = ..., results: _Optional[_Iterable[_Union[EntityResult, _Mapping]]] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class ImportFileRequest(_message.Message):
    __slots__ = ("file", "mode", "dry_run")
    FILE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    file: _httpbody_pb2.HttpBody
    mode: ImportMode
    dry_run: bool
    def __init__(self, file: _Optional[_Union[_httpbody_pb2.HttpBody, _Mapping]] = ..., mode: _Optional[_Union[ImportMode, str]] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class GetIntegrationStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CreateWebhookRequest(_message.Message):
    __slots__ = ("webhook",)
    WEBHOOK_FIELD_NUMBER: _ClassVar[int]
    webhook: Webhook
    def __init__(self, webhook: _Optional[_Union[Webhook, _Mapping]] = ...) -> None: ...

class ListWebhooksRequest(_message.Message):
    __slots__ = ("page", "page_size", "event", "active", "search", "order_by")
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    SEARCH_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    page: int
    page_size: int
    event: str
    active: bool
    search: str
    order_by: str
    def __init__(self, page: _Optional[int] = ..., page_size: _Optional[int] = ..., event: _Optional[str] = ..., active: _Optional[bool] = ..., search: _Optional[str] = ..., order_by: _Optional[str] = ...) -> None: ...

class ListWebhooksResponse(_message.Message):
    __slots__ = ("items", "total", "page", "page_size", "pages")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGES_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Webhook]
    total: int
    page: int
    page_size: int
    pages: int
    def __init__(self, items: _Optional[_Iterable[_Union[Webhook, _Mapping]]] = ..., total: _Optional[int] = ..., page: _Optional[int] = ..., page_size: _Optional[int] = ..., pages: _Optional[int] = ...) -> None: ...

class CreateApiConnectionRequest(_message.Message):
    __slots__ = ("api_connection",)
    API_CONNECTION_FIELD_NUMBER: _ClassVar[int]
    api_connection: ApiConnection
    def __init__(self, api_connection: _Optional[_Union[ApiConnection, _Mapping]] = ...) -> None: ...

class ListApiConnectionsRequest(_message.Message):
    __slots__ = ("page", "page_size", "auth_type", "search", "order_by")
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    AUTH_TYPE_FIELD_NUMBER: _ClassVar[int]
    SEARCH_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    page: int
    page_size: int
    auth_type: AuthType
    search: str
    order_by: str
    def __init__(self, page: _Optional[int] = ..., page_size: _Optional[int] = ..., auth_type: _Optional[_Union[AuthType, str]] = ..., search: _Optional[str] = ..., order_by: _Optional[str] = ...) -> None: ...

class ListApiConnectionsResponse(_message.Message):
    __slots__ = ("items", "total", "page", "page_size", "pages")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGES_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[ApiConnection]
    total: int
    page: int
    page_size: int
    pages: int
    def __init__(self, items: _Optional[_Iterable[_Union[ApiConnection, _Mapping]]] = ..., total: _Optional[int] = ..., page: _Optional[int] = ..., page_size: _Optional[int] = ..., pages: _Optional[int] = ...) -> None: ...

class BatchCreateAgentsRequest(_message.Message):
    __slots__ = ("agents", "atomic")
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    ATOMIC_FIELD_NUMBER: _ClassVar[int]
    agents: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Struct]
    atomic: bool
    def __init__(self, agents: _Optional[_Iterable[_Union[_struct_pb2.Struct, _Mapping]]] = ..., atomic: _Optional[bool] = ...) -> None: ...

class BatchCreateAgentsResponse(_message.Message):
    __slots__ = ("results", "succeeded", "failed")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[BatchItemResult]
    succeeded: int
    failed: int
    def __init__(self, results: _Optional[_Iterable[_Union[BatchItemResult, _Mapping]]] = ..., succeeded: _Optional[int] = ..., failed: _Optional[int] = ...) -> None: ...

class BatchCreateWorkflowsRequest(_message.Message):
    __slots__ = ("workflows", "atomic")
    WORKFLOWS_FIELD_NUMBER: _ClassVar[int]
    ATOMIC_FIELD_NUMBER: _ClassVar[int]
    workflows: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Struct]
    atomic: bool
    def __init__(self, workflows: _Optional[_Iterable[_Union[_struct_pb2.Struct, _Mapping]]] = ..., atomic: _Optional[bool] = ...) -> None: ...

class BatchCreateWorkflowsResponse(_message.Message):
    __slots__ = ("results", "succeeded", "failed")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[BatchItemResult]
    succeeded: int
    failed: int
    def __init__(self, results: _Optional[_Iterable[_Union[BatchItemResult, _Mapping]]] = ..., succeeded: _Optional[int] = ..., failed: _Optional[int] = ...) -> None: ...

class DeleteWebhookRequest(_message.Message):
    __slots__ = ("webhook_id",)
    WEBHOOK_ID_FIELD_NUMBER: _ClassVar[int]
    webhook_id: str
    def __init__(self, webhook_id: _Optional[str] = ...) -> None: ...

class WebhookDelivery(_message.Message):
    __slots__ = ("id", "webhook_id", "event", "status", "attempts", "status_code", "error", "created_at", "updated_at", "next_attempt_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    STATUS_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    NEXT_ATTEMPT_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    webhook_id: str
    event: str
    status: str
    attempts: int
    status_code: int
    error: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    next_attempt_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., webhook_id: _Optional[str] = ..., event: _Optional[str] = ..., status: _Optional[str] = ..., attempts: _Optional[int] = ..., status_code: _Optional[int] = ..., error: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., next_attempt_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListWebhookDeliveriesRequest(_message.Message):
    __slots__ = ("webhook_id", "page", "page_size")
    WEBHOOK_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    webhook_id: str
    page: int
    page_size: int
    def __init__(self, webhook_id: _Optional[str] = ..., page: _Optional[int] = ..., page_size: _Optional[int] = ...) -> None: ...

class ListWebhookDeliveriesResponse(_message.Message):
    __slots__ = ("items", "total", "page", "page_size", "pages")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGES_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[WebhookDelivery]
    total: int
    page: int
    page_size: int
    pages: int
    def __init__(self, items: _Optional[_Iterable[_Union[WebhookDelivery, _Mapping]]] = ..., total: _Optional[int] = ..., page: _Optional[int] = ..., page_size: _Optional[int] = ..., pages: _Optional[int] = ...) -> None: ...

class DeleteApiConnectionRequest(_message.Message):
    __slots__ = ("connection_id",)
    CONNECTION_ID_FIELD_NUMBER: _ClassVar[int]
    connection_id: str
    def __init__(self, connection_id: _Optional[str] = ...) -> None: ...

class TestApiConnectionRequest(_message.Message):
    __slots__ = ("connection_id", "path")
    CONNECTION_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    connection_id: str
    path: str
    def __init__(self, connection_id: _Optional[str] = ..., path: _Optional[str] = ...) -> None: ...

class TestApiConnectionResponse(_message.Message):
    __slots__ = ("ok", "status_code", "latency_ms", "error", "url")
    OK_FIELD_NUMBER: _ClassVar[int]
    STATUS_CODE_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    status_code: int
    latency_ms: float
    error: str
    url: str
    def __init__(self, ok: _Optional[bool] = ..., status_code: _Optional[int] = ..., latency_ms: _Optional[float] = ..., error: _Optional[str] = ..., url: _Optional[str] = ...) -> None: ...
