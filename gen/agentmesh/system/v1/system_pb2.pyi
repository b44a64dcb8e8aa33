import datetime

from agentmesh.common.v1 import annotations_pb2 as _annotations_pb2
from agentmesh.common.v1 import common_pb2 as _common_pb2
from google.api import annotations_pb2 as _annotations_pb2_1
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.api import httpbody_pb2 as _httpbody_pb2
from google.protobuf import duration_pb2 as _duration_pb2
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

class LogLevel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LOG_LEVEL_UNSPECIFIED: _ClassVar[LogLevel]
    LOG_LEVEL_DEBUG: _ClassVar[LogLevel]
    LOG_LEVEL_INFO: _ClassVar[LogLevel]
    LOG_LEVEL_WARNING: _ClassVar[LogLevel]
    LOG_LEVEL_ERROR: _ClassVar[LogLevel]
    LOG_LEVEL_CRITICAL: _ClassVar[LogLevel]

class AlertSeverity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ALERT_SEVERITY_UNSPECIFIED: _ClassVar[AlertSeverity]
    ALERT_SEVERITY_INFO: _ClassVar[AlertSeverity]
    ALERT_SEVERITY_WARNING: _ClassVar[AlertSeverity]
    ALERT_SEVERITY_CRITICAL: _ClassVar[AlertSeverity]

class AlertState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ALERT_STATE_UNSPECIFIED: _ClassVar[AlertState]
    ALERT_STATE_FIRING: _ClassVar[AlertState]
    ALERT_STATE_RESOLVED: _ClassVar[AlertState]

class BackupStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BACKUP_STATUS_UNSPECIFIED: _ClassVar[BackupStatus]
    BACKUP_STATUS_PENDING: _ClassVar[BackupStatus]
    BACKUP_STATUS_RUNNING: _ClassVar[BackupStatus]
    BACKUP_STATUS_COMPLETED: _ClassVar[BackupStatus]
    BACKUP_STATUS_FAILED: _ClassVar[BackupStatus]
LOG_LEVEL_UNSPECIFIED: LogLevel
LOG_LEVEL_DEBUG: LogLevel
LOG_LEVEL_INFO: LogLevel
LOG_LEVEL_WARNING: LogLevel
LOG_LEVEL_ERROR: LogLevel
LOG_LEVEL_CRITICAL: LogLevel
ALERT_SEVERITY_UNSPECIFIED: AlertSeverity
ALERT_SEVERITY_INFO: AlertSeverity
ALERT_SEVERITY_WARNING: AlertSeverity
ALERT_SEVERITY_CRITICAL: AlertSeverity
ALERT_STATE_UNSPECIFIED: AlertState
ALERT_STATE_FIRING: AlertState
ALERT_STATE_RESOLVED: AlertState
BACKUP_STATUS_UNSPECIFIED: BackupStatus
BACKUP_STATUS_PENDING: BackupStatus
BACKUP_STATUS_RUNNING: BackupStatus
BACKUP_STATUS_COMPLETED: BackupStatus
BACKUP_STATUS_FAILED: BackupStatus

class ServiceStatus(_message.Message):
    __slots__ = ("name", "status", "version", "ready_instances", "started_at", "message", "address", "database", "migration_revisions", "config_revision")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    READY_INSTANCES_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    DATABASE_FIELD_NUMBER: _ClassVar[int]
    MIGRATION_REVISIONS_FIELD_NUMBER: _ClassVar[int]
    CONFIG_REVISION_FIELD_NUMBER: _ClassVar[int]
    name: str
    status: str
    version: str
    ready_instances: int
    started_at: _timestamp_pb2.Timestamp
    message: str
    address: str
    database: str
    migration_revisions: _containers.RepeatedScalarFieldContainer[str]
    config_revision: str
    def __init__(self, name: _Optional[str] = ..., status: _Optional[str] = ..., version: _Optional[str] = ..., ready_instances: _Optional[int] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., message: _Optional[str] = ..., address: _Optional[str] = ..., database: _Optional[str] = ..., migration_revisions: _Optional[_Iterable[str]] = ..., config_revision: _Optional[str] = ...) -> None: ...

class SystemStatus(_message.Message):
    __slots__ = ("status", "version", "environment", "started_at", "uptime_seconds", "services", "timestamp")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    UPTIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    status: str
    version: str
    environment: str
    started_at: _timestamp_pb2.Timestamp
    uptime_seconds: float
    services: _containers.RepeatedCompositeFieldContainer[ServiceStatus]
    timestamp: _timestamp_pb2.Timestamp
    def __init__(self, status: _Optional[str] = ..., version: _Optional[str] = ..., environment: _Optional[str] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., uptime_seconds: _Optional[float] = ..., services: _Optional[_Iterable[_Union[ServiceStatus, _Mapping]]] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SystemInfo(_message.Message):
    __slots__ = ("name", "version", "api_version", "build_commit", "built_at", "environment", "python_version", "gateway_version", "enabled_features", "uptime_seconds", "database", "services")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    BUILD_COMMIT_FIELD_NUMBER: _ClassVar[int]
    BUILT_AT_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    PYTHON_VERSION_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_VERSION_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FEATURES_FIELD_NUMBER: _ClassVar[int]
    UPTIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DATABASE_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    api_version: str
    build_commit: str
    built_at: _timestamp_pb2.Timestamp
    environment: str
    python_version: str
    gateway_version: str
    enabled_features: _containers.RepeatedScalarFieldContainer[str]
    uptime_seconds: float
    database: str
    services: _containers.RepeatedCompositeFieldContainer[ServiceStatus]
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., api_version: _Optional[str] = ..., build_commit: _Optional[str] = ..., built_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., environment: _Optional[str] = ..., python_version: _Optional[str] = ..., gateway_version: _Optional[str] = ..., enabled_features: _Optional[_Iterable[str]] = ..., uptime_seconds: _Optional[float] = ..., database: _Optional[str] = ..., services: _Optional[_Iterable[_Union[ServiceStatus, _Mapping]]] = ...) -> None: ...

class SystemLogEntry(_message.Message):
    __slots__ = ("timestamp", "level", "service", "message", "correlation_id", "attributes")
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    timestamp: _timestamp_pb2.Timestamp
    level: LogLevel
    service: str
    message: str
    correlation_id: str
    attributes: _struct_pb2.Struct
    def __init__(self, timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., level: _Optional[_Union[LogLevel, str]] = ..., service: _Optional[str] = ..., message: _Optional[str] = ..., correlation_id: _Optional[str] = ..., attributes: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class SystemConfig(_message.Message):
    __slots__ = ("config", "version", "updated_by", "updated_at")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    UPDATED_BY_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    config: _struct_pb2.Struct
    version: int
    updated_by: str
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, config: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., version: _Optional[int] = ..., updated_by: _Optional[str] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ServiceMetrics(_message.Message):
    __slots__ = ("name", "cpu_percent", "memory_mb", "request_rate", "error_rate", "p95_latency_ms")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CPU_PERCENT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    REQUEST_RATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_RATE_FIELD_NUMBER: _ClassVar[int]
    P95_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    name: str
    cpu_percent: float
    memory_mb: float
    request_rate: float
    error_rate: float
    p95_latency_ms: float
    def __init__(self, name: _Optional[str] = ..., cpu_percent: _Optional[float] = ..., memory_mb: _Optional[float] = ..., request_rate: _Optional[float] = ..., error_rate: _Optional[float] = ..., p95_latency_ms: _Optional[float] = ...) -> None: ...

class SystemMetrics(_message.Message):
    __slots__ = ("timestamp", "cpu_percent", "memory_percent", "memory_used_mb", "disk_percent", "request_rate", "error_rate", "p95_latency_ms", "active_connections", "database_connections", "services")
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    CPU_PERCENT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_PERCENT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USED_MB_FIELD_NUMBER: _ClassVar[int]
    DISK_PERCENT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_RATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_RATE_FIELD_NUMBER: _ClassVar[int]
    P95_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_CONNECTIONS_FIELD_NUMBER: _ClassVar[int]
    DATABASE_CONNECTIONS_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    timestamp: _timestamp_pb2.Timestamp
    cpu_percent: float
    memory_percent: float
    memory_used_mb: float
    disk_percent: float
    request_rate: float
    error_rate: float
    p95_latency_ms: float
    active_connections: int
    database_connections: int
    services: _containers.RepeatedCompositeFieldContainer[ServiceMetrics]
    def __init__(self, timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cpu_percent: _Optional[float] = ..., memory_percent: _Optional[float] = ..., memory_used_mb: _Optional[float] = ..., disk_percent: _Optional[float] = ..., request_rate: _Optional[float] = ..., error_rate: _Optional[float] = ..., p95_latency_ms: _Optional[float] = ..., active_connections: _Optional[int] = ..., database_connections: _Optional[int] = ..., services: _Optional[_Iterable[_Union[ServiceMetrics, _Mapping]]] = ...) -> None: ...

class MetricPoint(_message.Message):
    __slots__ = ("timestamp", "value")
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    timestamp: _timestamp_pb2.Timestamp
    value: float
    def __init__(self, timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., value: _Optional[float] = ...) -> None: ...

class MetricSeries(_message.Message):
    __slots__ = ("name", "labels", "unit", "points")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    labels: _containers.ScalarMap[str, str]
    unit: str
    points: _containers.RepeatedCompositeFieldContainer[MetricPoint]
    def __init__(self, name: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., unit: _Optional[str] = ..., points: _Optional[_Iterable[_Union[MetricPoint, _Mapping]]] = ...) -> None: ...

class SystemMetricsHistory(_message.Message):
    __slots__ = ("start_time", "end_time", "interval", "series")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    SERIES_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    interval: _duration_pb2.Duration
    series: _containers.RepeatedCompositeFieldContainer[MetricSeries]
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., series: _Optional[_Iterable[_Union[MetricSeries, _Mapping]]] = ...) -> None: ...

class RestartServiceResponse(_message.Message):
    __slots__ = ("service", "status", "message", "requested_at")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_AT_FIELD_NUMBER: _ClassVar[int]
    service: str
    status: str
    message: str
    requested_at: _timestamp_pb2.Timestamp
    def __init__(self, service: _Optional[str] = ..., status: _Optional[str] = ..., message: _Optional[str] = ..., requested_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ClearCacheResponse(_message.Message):
    __slots__ = ("success", "cleared", "keys_removed", "message")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    CLEARED_FIELD_NUMBER: _ClassVar[int]
    KEYS_REMOVED_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    success: bool
    cleared: _containers.RepeatedScalarFieldContainer[str]
    keys_removed: int
    message: str
    def __init__(self, success: _Optional[bool] = ..., cleared: _Optional[_Iterable[str]] = ..., keys_removed: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class SystemStats(_message.Message):
    __slots__ = ("tenant_id", "agents", "deployed_agents", "workflows", "tools", "templates", "users", "calls_24h", "active_calls", "workflow_executions_24h", "running_executions", "timestamp")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    DEPLOYED_AGENTS_FIELD_NUMBER: _ClassVar[int]
    WORKFLOWS_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    TEMPLATES_FIELD_NUMBER: _ClassVar[int]
    USERS_FIELD_NUMBER: _ClassVar[int]
    CALLS_24H_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_CALLS_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_EXECUTIONS_24H_FIELD_NUMBER: _ClassVar[int]
    RUNNING_EXECUTIONS_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    agents: int
    deployed_agents: int
    workflows: int
    tools: int
    templates: int
    users: int
    calls_24h: int
    active_calls: int
    workflow_executions_24h: int
    running_executions: int
    timestamp: _timestamp_pb2.Timestamp
    def __init__(self, tenant_id: _Optional[str] = ..., agents: _Optional[int] = ..., deployed_agents: _Optional[int] = ..., workflows: _Optional[int] = ..., tools: _Optional[int] = ..., templates: _Optional[int] = ..., users: _Optional[int] = ..., calls_24h: _Optional[int] = ..., active_calls: _Optional[int] = ..., workflow_executions_24h: _Optional[int] = ..., running_executions: _Optional[int] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SystemAlert(_message.Message):
    __slots__ = ("id", "tenant_id", "title", "message", "severity", "state", "service", "resolved_at", "created_at", "updated_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_AT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    tenant_id: str
    title: str
    message: str
    severity: AlertSeverity
    state: AlertState
    service: str
    resolved_at: _timestamp_pb2.Timestamp
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., title: _Optional[str] = ..., message: _Optional[str] = ..., severity: _Optional[_Union[AlertSeverity, str]] = ..., state: _Optional[_Union[AlertState, str]] = ..., service: _Optional[str] = ..., resolved_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Backup(_message.Message):
    __slots__ = ("id", "tenant_id", "description", "services", "status", "location", "size_mb", "error", "completed_at", "created_by", "created_at", "updated_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    SIZE_MB_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    tenant_id: str
    description: str
    services: _containers.RepeatedScalarFieldContainer[str]
    status: BackupStatus
    location: str
    size_mb: float
    error: str
    completed_at: _timestamp_pb2.Timestamp
    created_by: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., description: _Optional[str] = ..., services: _Optional[_Iterable[str]] = ..., status: _Optional[_Union[BackupStatus, str]] = ..., location: _Optional[str] = ..., size_mb: _Optional[float] = ..., error: _Optional[str] = ..., completed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_by: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class FeatureFlag(_message.Message):
    __slots__ = ("id", "tenant_id", "name", "description", "enabled", "rollout_percentage", "tenant_ids", "rules", "updated_by", "created_at", "updated_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    ROLLOUT_PERCENTAGE_FIELD_NUMBER: _ClassVar[int]
    TENANT_IDS_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    UPDATED_BY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    tenant_id: str
    name: str
    description: str
    enabled: bool
    rollout_percentage: int
    tenant_ids: _containers.RepeatedScalarFieldContainer[str]
    rules: _struct_pb2.Struct
    updated_by: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., enabled: _Optional[bool] = ..., rollout_percentage: _Optional[int] = ..., tenant_ids: _Optional[_Iterable[str]] = ..., rules: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., updated_by: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetSystemStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetHealthRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetSystemInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListSystemLogsRequest(_message.Message):
    __slots__ = ("page", "page_size", "level", "service", "correlation_id", "search", "start_time", "end_time", "order_by")
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    SEARCH_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    page: int
    page_size: int
    level: LogLevel
    service: str
    correlation_id: str
    search: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    order_by: str
    def __init__(self, page: _Optional[int] = ..., page_size: _Optional[int] = ..., level: _Optional[_Union[LogLevel, str]] = ..., service: _Optional[str] = ..., correlation_id: _Optional[str] = ..., search: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., order_by: _Optional[str] = ...) -> None: ...

class ListSystemLogsResponse(_message.Message):
    __slots__ = ("items", "total", "page", "page_size", "pages")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGES_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[SystemLogEntry]
    total: int
    page: int
    page_size: int
    pages: int
    def __init__(self, items: _Optional[_Iterable[_Union[SystemLogEntry, _Mapping]]] = ..., total: _Optional[int] = ..., page: _Optional[int] = ..., page_size: _Optional[int] = ..., pages: _Optional[int] = ...) -> None: ...

class GetSystemConfigRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class UpdateSystemConfigRequest(_message.Message):
    __slots__ = ("config", "update_mask", "expected_version")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    config: SystemConfig
    update_mask: _field_mask_pb2.FieldMask
    expected_version: int
    def __init__(self, config: _Optional[_Union[SystemConfig, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ..., expected_version: _Optional[int] = ...) -> None: ...

class GetSystemMetricsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetSystemMetricsHistoryRequest(_message.Message):
    __slots__ = ("names", "service", "start_time", "end_time", "interval")
    NAMES_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    service: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    interval: _duration_pb2.Duration
    def __init__(self, names: _Optional[_Iterable[str]] = ..., service: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class RestartServiceRequest(_message.Message):
    __slots__ = ("service", "reason", "grace_period")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    GRACE_PERIOD_FIELD_NUMBER: _ClassVar[int]
    service: str
    reason: str
    grace_period: _duration_pb2.Duration
    def __init__(self, service: _Optional[str] = ..., reason: _Optional[str] = ..., grace_period: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class ClearCacheRequest(_message.Message):
    __slots__ = ("caches", "pattern")
    CACHES_FIELD_NUMBER: _ClassVar[int]
    PATTERN_FIELD_NUMBER: _ClassVar[int]
    caches: _containers.RepeatedScalarFieldContainer[str]
    pattern: str
    def __init__(self, caches: _Optional[_Iterable[str]] = ..., pattern: _Optional[str] = ...) -> None: ...

class GetSystemStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListSystemAlertsRequest(_message.Message):
    __slots__ = ("page", "page_size", "state", "severity", "service", "order_by")
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    page: int
    page_size: int
    state: AlertState
    severity: AlertSeverity
    service: str
    order_by: str
    def __init__(self, page: _Optional[int] = ..., page_size: _Optional[int] = ..., state: _Optional[_Union[AlertState, str]] = ..., severity: _Optional[_Union[AlertSeverity, str]] = ..., service: _Optional[str] = ..., order_by: _Optional[str] = ...) -> None: ...

class ListSystemAlertsResponse(_message.Message):
    __slots__ = ("items", "total", "page", "page_size", "pages")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGES_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[SystemAlert]
    total: int
    page: int
    page_size: int
    pages: int
    def __init__(self, items: _Optional[_Iterable[_Union[SystemAlert, _Mapping]]] = ..., total: _Optional[int] = ..., page: _Optional[int] = ..., page_size: _Optional[int] = ..., pages: _Optional[int] = ...) -> None: ...

class CreateBackupRequest(_message.Message):
    __slots__ = ("backup",)
    BACKUP_FIELD_NUMBER: _ClassVar[int]
    backup: Backup
    def __init__(self, backup: _Optional[_Union[Backup, _Mapping]] = ...) -> None: ...

class ListFeatureFlagsRequest(_message.Message):
    __slots__ = ("page", "page_size", "enabled", "search", "order_by")
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    SEARCH_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    page: int
    page_size: int
    enabled: bool
    search: str
    order_by: str
    def __init__(self, page: _Optional[int] = ..., page_size: _Optional[int] = ..., enabled: _Optional[bool] = ..., search: _Optional[str] = ..., order_by: _Optional[str] = ...) -> None: ...

class ListFeatureFlagsResponse(_message.Message):
    __slots__ = ("items", "total", "page", "page_size", "pages")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGES_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[FeatureFlag]
    total: int
    page: int
    page_size: int
    pages: int
    def __init__(self, items: _Optional[_Iterable[_Union[FeatureFlag, _Mapping]]] = ..., total: _Optional[int] = ..., page: _Optional[int] = ..., page_size: _Optional[int] = ..., pages: _Optional[int] = ...) -> None: ...

class UpdateFeatureFlagRequest(_message.Message):
    __slots__ = ("flag_name", "feature_flag", "update_mask", "allow_missing")
    FLAG_NAME_FIELD_NUMBER: _ClassVar[int]
    FEATURE_FLAG_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    ALLOW_MISSING_FIELD_NUMBER: _ClassVar[int]
    flag_name: str
    feature_flag: FeatureFlag
    update_mask: _field_mask_pb2.FieldMask
    allow_missing: bool
    def __init__(self, flag_name: _Optional[str] = ..., feature_flag: _Optional[_Union[FeatureFlag, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ..., allow_missing: _Optional[bool] = ...) -> None: ...

class CheckHealthRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetOpenApiDocumentRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetDocsPageRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetDocsAssetRequest(_message.Message):
    __slots__ = ("path",)
    PATH_FIELD_NUMBER: _ClassVar[int]
    path: str
    def __init__(self, path: _Optional[str] = ...) -> None: ...

class GetConsolePageRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetConsoleAssetRequest(_message.Message):
    __slots__ = ("path",)
    PATH_FIELD_NUMBER: _ClassVar[int]
    path: str
    def __init__(self, path: _Optional[str] = ...) -> None: ...

class GetRuntimeConfigRequest(_message.Message):
    __slots__ = ("services", "known_revision", "wait_seconds")
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    KNOWN_REVISION_FIELD_NUMBER: _ClassVar[int]
    WAIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    services: _containers.RepeatedCompositeFieldContainer[ServiceReport]
    known_revision: str
    wait_seconds: int
    def __init__(self, services: _Optional[_Iterable[_Union[ServiceReport, _Mapping]]] = ..., known_revision: _Optional[str] = ..., wait_seconds: _Optional[int] = ...) -> None: ...

class RuntimeConfig(_message.Message):
    __slots__ = ("revision", "unchanged", "config", "feature_flags", "cache_generation", "clear_caches")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    UNCHANGED_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    FEATURE_FLAGS_FIELD_NUMBER: _ClassVar[int]
    CACHE_GENERATION_FIELD_NUMBER: _ClassVar[int]
    CLEAR_CACHES_FIELD_NUMBER: _ClassVar[int]
    revision: str
    unchanged: bool
    config: _struct_pb2.Struct
    feature_flags: _containers.RepeatedCompositeFieldContainer[FeatureFlag]
    cache_generation: int
    clear_caches: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, revision: _Optional[str] = ..., unchanged: _Optional[bool] = ..., config: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., feature_flags: _Optional[_Iterable[_Union[FeatureFlag, _Mapping]]] = ..., cache_generation: _Optional[int] = ..., clear_caches: _Optional[_Iterable[str]] = ...) -> None: ...

class ServiceReport(_message.Message):
    __slots__ = ("name", "version", "started_at", "database", "migration_revisions", "config_revision", "pid", "host")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    DATABASE_FIELD_NUMBER: _ClassVar[int]
    MIGRATION_REVISIONS_FIELD_NUMBER: _ClassVar[int]
    CONFIG_REVISION_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    started_at: _timestamp_pb2.Timestamp
    database: str
    migration_revisions: _containers.RepeatedScalarFieldContainer[str]
    config_revision: str
    pid: int
    host: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., database: _Optional[str] = ..., migration_revisions: _Optional[_Iterable[str]] = ..., config_revision: _Optional[str] = ..., pid: _Optional[int] = ..., host: _Optional[str] = ...) -> None: ...
