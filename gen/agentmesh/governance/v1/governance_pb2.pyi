import datetime

from agentmesh.common.v1 import annotations_pb2 as _annotations_pb2
from agentmesh.common.v1 import common_pb2 as _common_pb2
from google.api import annotations_pb2 as _annotations_pb2_1
from google.api import field_behavior_pb2 as _field_behavior_pb2
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

class PolicyEffect(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    POLICY_EFFECT_UNSPECIFIED: _ClassVar[PolicyEffect]
    POLICY_EFFECT_ALLOW: _ClassVar[PolicyEffect]
    POLICY_EFFECT_DENY: _ClassVar[PolicyEffect]
POLICY_EFFECT_UNSPECIFIED: PolicyEffect
POLICY_EFFECT_ALLOW: PolicyEffect
POLICY_EFFECT_DENY: PolicyEffect

class GovernanceDecision(_message.Message):
    __slots__ = ("allowed", "reason", "policy_id", "decision_id", "correlation_id", "matching_policies", "decision_time_ms")
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    POLICY_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    MATCHING_POLICIES_FIELD_NUMBER: _ClassVar[int]
    DECISION_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    allowed: bool
    reason: str
    policy_id: str
    decision_id: str
    correlation_id: str
    matching_policies: _containers.RepeatedScalarFieldContainer[str]
    decision_time_ms: float
    def __init__(self, allowed: _Optional[bool] = ..., reason: _Optional[str] = ..., policy_id: _Optional[str] = ..., decision_id: _Optional[str] = ..., correlation_id: _Optional[str] = ..., matching_policies: _Optional[_Iterable[str]] = ..., decision_time_ms: _Optional[float] = ...) -> None: ...

class PolicyMatch(_message.Message):
    __slots__ = ("intents", "scopes", "resources")
    INTENTS_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    intents: _containers.RepeatedScalarFieldContainer[str]
    scopes: _containers.RepeatedScalarFieldContainer[str]
    resources: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, intents: _Optional[_Iterable[str]] = ..., scopes: _Optional[_Iterable[str]] = ..., resources: _Optional[_Iterable[str]] = ...) -> None: ...

class RateLimitRule(_message.Message):
    __slots__ = ("requests", "per")
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    PER_FIELD_NUMBER: _ClassVar[int]
    requests: int
    per: _duration_pb2.Duration
    def __init__(self, requests: _Optional[int] = ..., per: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class Policy(_message.Message):
    __slots__ = ("id", "tenant_id", "name", "description", "effect", "priority", "match", "rules", "rate_limit", "enabled", "created_at", "updated_at", "cedar", "version", "version_labels")
    class VersionLabelsEntry(_message.Message):
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
    EFFECT_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    MATCH_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    CEDAR_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    VERSION_LABELS_FIELD_NUMBER: _ClassVar[int]
    id: str
    tenant_id: str
    name: str
    description: str
    effect: PolicyEffect
    priority: int
    match: PolicyMatch
    rules: _struct_pb2.Struct
    rate_limit: RateLimitRule
    enabled: bool
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    cedar: str
    version: int
    version_labels: _containers.ScalarMap[str, int]
    def __init__(self, id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., effect: _Optional[_Union[PolicyEffect, str]] = ..., priority: _Optional[int] = ..., match: _Optional[_Union[PolicyMatch, _Mapping]] = ..., rules: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., rate_limit: _Optional[_Union[RateLimitRule, _Mapping]] = ..., enabled: _Optional[bool] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cedar: _Optional[str] = ..., version: _Optional[int] = ..., version_labels: _Optional[_Mapping[str, int]] = ...) -> None: ...

class PolicyVersion(_message.Message):
    __slots__ = ("policy_id", "version", "cedar", "enabled", "created_by", "created_at", "labels")
    POLICY_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CEDAR_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    policy_id: str
    version: int
    cedar: str
    enabled: bool
    created_by: str
    created_at: _timestamp_pb2.Timestamp
    labels: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, policy_id: _Optional[str] = ..., version: _Optional[int] = ..., cedar: _Optional[str] = ..., enabled: _Optional[bool] = ..., created_by: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., labels: _Optional[_Iterable[str]] = ...) -> None: ...

class Decision(_message.Message):
    __slots__ = ("id", "tenant_id", "correlation_id", "intent", "subject", "allowed", "reason", "policy_id", "created_at", "context", "action", "principal", "resource", "matching_policies", "policy_version", "decision_time_us", "decision_time_ms")
    ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    INTENT_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    POLICY_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    MATCHING_POLICIES_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    DECISION_TIME_US_FIELD_NUMBER: _ClassVar[int]
    DECISION_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    id: str
    tenant_id: str
    correlation_id: str
    intent: str
    subject: str
    allowed: bool
    reason: str
    policy_id: str
    created_at: _timestamp_pb2.Timestamp
    context: _struct_pb2.Struct
    action: str
    principal: str
    resource: str
    matching_policies: _containers.RepeatedScalarFieldContainer[str]
    policy_version: int
    decision_time_us: int
    decision_time_ms: float
    def __init__(self, id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., correlation_id: _Optional[str] = ..., intent: _Optional[str] = ..., subject: _Optional[str] = ..., allowed: _Optional[bool] = ..., reason: _Optional[str] = ..., policy_id: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., context: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., action: _Optional[str] = ..., principal: _Optional[str] = ..., resource: _Optional[str] = ..., matching_policies: _Optional[_Iterable[str]] = ..., policy_version: _Optional[int] = ..., decision_time_us: _Optional[int] = ..., decision_time_ms: _Optional[float] = ...) -> None: ...

class RateLimitUsage(_message.Message):
    __slots__ = ("name", "policy_id", "limit", "used", "remaining", "window", "reset_at")
    NAME_FIELD_NUMBER: _ClassVar[int]
    POLICY_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    USED_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    RESET_AT_FIELD_NUMBER: _ClassVar[int]
    name: str
    policy_id: str
    limit: int
    used: int
    remaining: int
    window: _duration_pb2.Duration
    reset_at: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., policy_id: _Optional[str] = ..., limit: _Optional[int] = ..., used: _Optional[int] = ..., remaining: _Optional[int] = ..., window: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., reset_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RateLimits(_message.Message):
    __slots__ = ("tenant_id", "timestamp", "limits", "budgets")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    BUDGETS_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    timestamp: _timestamp_pb2.Timestamp
    limits: _containers.RepeatedCompositeFieldContainer[RateLimitUsage]
    budgets: _containers.RepeatedCompositeFieldContainer[BudgetUsage]
    def __init__(self, tenant_id: _Optional[str] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., limits: _Optional[_Iterable[_Union[RateLimitUsage, _Mapping]]] = ..., budgets: _Optional[_Iterable[_Union[BudgetUsage, _Mapping]]] = ...) -> None: ...

class BudgetUsage(_message.Message):
    __slots__ = ("name", "tokens_today", "cost_today_usd", "max_cost_per_day", "reset_at")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOKENS_TODAY_FIELD_NUMBER: _ClassVar[int]
    COST_TODAY_USD_FIELD_NUMBER: _ClassVar[int]
    MAX_COST_PER_DAY_FIELD_NUMBER: _ClassVar[int]
    RESET_AT_FIELD_NUMBER: _ClassVar[int]
    name: str
    tokens_today: int
    cost_today_usd: float
    max_cost_per_day: float
    reset_at: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., tokens_today: _Optional[int] = ..., cost_today_usd: _Optional[float] = ..., max_cost_per_day: _Optional[float] = ..., reset_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class DispatchRequest(_message.Message):
    __slots__ = ("intent", "context")
    INTENT_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    intent: str
    context: _struct_pb2.Struct
    def __init__(self, intent: _Optional[str] = ..., context: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class DispatchResponse(_message.Message):
    __slots__ = ("status", "message", "reason", "correlation_id", "timestamp", "governance", "operation", "result")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    GOVERNANCE_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    status: str
    message: str
    reason: str
    correlation_id: str
    timestamp: _timestamp_pb2.Timestamp
    governance: GovernanceDecision
    operation: str
    result: _struct_pb2.Struct
    def __init__(self, status: _Optional[str] = ..., message: _Optional[str] = ..., reason: _Optional[str] = ..., correlation_id: _Optional[str] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., governance: _Optional[_Union[GovernanceDecision, _Mapping]] = ..., operation: _Optional[str] = ..., result: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class ListPoliciesRequest(_message.Message):
    __slots__ = ("page", "page_size", "effect", "enabled", "intent", "search", "order_by")
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    EFFECT_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    INTENT_FIELD_NUMBER: _ClassVar[int]
    SEARCH_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    page: int
    page_size: int
    effect: PolicyEffect
    enabled: bool
    intent: str
    search: str
    order_by: str
    def __init__(self, page: _Optional[int] = ..., page_size: _Optional[int] = ..., effect: _Optional[_Union[PolicyEffect, str]] = ..., enabled: _Optional[bool] = ..., intent: _Optional[str] = ..., search: _Optional[str] = ..., order_by: _Optional[str] = ...) -> None: ...

class ListPoliciesResponse(_message.Message):
    __slots__ = ("items", "total", "page", "page_size", "pages")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGES_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Policy]
    total: int
    page: int
    page_size: int
    pages: int
    def __init__(self, items: _Optional[_Iterable[_Union[Policy, _Mapping]]] = ..., total: _Optional[int] = ..., page: _Optional[int] = ..., page_size: _Optional[int] = ..., pages: _Optional[int] = ...) -> None: ...

class CreatePolicyRequest(_message.Message):
    __slots__ = ("policy",)
    POLICY_FIELD_NUMBER: _ClassVar[int]
    policy: Policy
    def __init__(self, policy: _Optional[_Union[Policy, _Mapping]] = ...) -> None: ...

class GetPolicyRequest(_message.Message):
    __slots__ = ("policy_id", "version", "label")
    POLICY_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    policy_id: str
    version: int
    label: str
    def __init__(self, policy_id: _Optional[str] = ..., version: _Optional[int] = ..., label: _Optional[str] = ...) -> None: ...

class UpdatePolicyRequest(_message.Message):
    __slots__ = ("policy_id", "policy", "update_mask")
    POLICY_ID_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    policy_id: str
    policy: Policy
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, policy_id: _Optional[str] = ..., policy: _Optional[_Union[Policy, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class DeletePolicyRequest(_message.Message):
    __slots__ = ("policy_id",)
    POLICY_ID_FIELD_NUMBER: _ClassVar[int]
    policy_id: str
    def __init__(self, policy_id: _Optional[str] = ...) -> None: ...

class ListDecisionsRequest(_message.Message):
    __slots__ = ("page", "page_size", "allowed", "intent", "policy_id", "subject", "correlation_id", "start_time", "end_time", "order_by")
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    INTENT_FIELD_NUMBER: _ClassVar[int]
    POLICY_ID_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    page: int
    page_size: int
    allowed: bool
    intent: str
    policy_id: str
    subject: str
    correlation_id: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    order_by: str
    def __init__(self, page: _Optional[int] = ..., page_size: _Optional[int] = ..., allowed: _Optional[bool] = ..., intent: _Optional[str] = ..., policy_id: _Optional[str] = ..., subject: _Optional[str] = ..., correlation_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., order_by: _Optional[str] = ...) -> None: ...

class ListDecisionsResponse(_message.Message):
    __slots__ = ("items", "total", "page", "page_size", "pages")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGES_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Decision]
    total: int
    page: int
    page_size: int
    pages: int
    def __init__(self, items: _Optional[_Iterable[_Union[Decision, _Mapping]]] = ..., total: _Optional[int] = ..., page: _Optional[int] = ..., page_size: _Optional[int] = ..., pages: _Optional[int] = ...) -> None: ...

class GetDecisionRequest(_message.Message):
    __slots__ = ("decision_id",)
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    def __init__(self, decision_id: _Optional[str] = ...) -> None: ...

class GetRateLimitsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListPolicyVersionsRequest(_message.Message):
    __slots__ = ("policy_id", "page", "page_size")
    POLICY_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    policy_id: str
    page: int
    page_size: int
    def __init__(self, policy_id: _Optional[str] = ..., page: _Optional[int] = ..., page_size: _Optional[int] = ...) -> None: ...

class ListPolicyVersionsResponse(_message.Message):
    __slots__ = ("items", "total", "page", "page_size", "pages")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGES_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[PolicyVersion]
    total: int
    page: int
    page_size: int
    pages: int
    def __init__(self, items: _Optional[_Iterable[_Union[PolicyVersion, _Mapping]]] = ..., total: _Optional[int] = ..., page: _Optional[int] = ..., page_size: _Optional[int] = ..., pages: _Optional[int] = ...) -> None: ...

class GetPolicyVersionRequest(_message.Message):
    __slots__ = ("policy_id", "version")
    POLICY_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    policy_id: str
    version: int
    def __init__(self, policy_id: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class DiffPolicyVersionsRequest(_message.Message):
    __slots__ = ("policy_id", "version", "against")
    POLICY_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    AGAINST_FIELD_NUMBER: _ClassVar[int]
    policy_id: str
    version: int
    against: int
    def __init__(self, policy_id: _Optional[str] = ..., version: _Optional[int] = ..., against: _Optional[int] = ...) -> None: ...

class SetPolicyLabelRequest(_message.Message):
    __slots__ = ("policy_id", "label", "version")
    POLICY_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    policy_id: str
    label: str
    version: int
    def __init__(self, policy_id: _Optional[str] = ..., label: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class DeletePolicyLabelRequest(_message.Message):
    __slots__ = ("policy_id", "label")
    POLICY_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    policy_id: str
    label: str
    def __init__(self, policy_id: _Optional[str] = ..., label: _Optional[str] = ...) -> None: ...

class DecisionRequest(_message.Message):
    __slots__ = ("principal_type", "principal_id", "action", "resource_type", "resource_id", "arguments")
    PRINCIPAL_TYPE_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_TYPE_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_FIELD_NUMBER: _ClassVar[int]
    principal_type: str
    principal_id: str
    action: str
    resource_type: str
    resource_id: str
    arguments: _struct_pb2.Struct
    def __init__(self, principal_type: _Optional[str] = ..., principal_id: _Optional[str] = ..., action: _Optional[str] = ..., resource_type: _Optional[str] = ..., resource_id: _Optional[str] = ..., arguments: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class DryRunPolicyRequest(_message.Message):
    __slots__ = ("policy", "request")
    POLICY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    policy: Policy
    request: DecisionRequest
    def __init__(self, policy: _Optional[_Union[Policy, _Mapping]] = ..., request: _Optional[_Union[DecisionRequest, _Mapping]] = ...) -> None: ...

class DryRunPolicyResponse(_message.Message):
    __slots__ = ("allowed", "reason", "matching_policies", "errors")
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MATCHING_POLICIES_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    allowed: bool
    reason: str
    matching_policies: _containers.RepeatedScalarFieldContainer[str]
    errors: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, allowed: _Optional[bool] = ..., reason: _Optional[str] = ..., matching_policies: _Optional[_Iterable[str]] = ..., errors: _Optional[_Iterable[str]] = ...) -> None: ...

class DecideRequest(_message.Message):
    __slots__ = ("request", "intent")
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    INTENT_FIELD_NUMBER: _ClassVar[int]
    request: DecisionRequest
    intent: str
    def __init__(self, request: _Optional[_Union[DecisionRequest, _Mapping]] = ..., intent: _Optional[str] = ...) -> None: ...

class CheckBudgetRequest(_message.Message):
    __slots__ = ("agent_id", "model", "estimated_tokens", "max_tokens_per_call", "max_cost_per_day", "tenant_max_cost_per_day", "api_key_id")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_PER_CALL_FIELD_NUMBER: _ClassVar[int]
    MAX_COST_PER_DAY_FIELD_NUMBER: _ClassVar[int]
    TENANT_MAX_COST_PER_DAY_FIELD_NUMBER: _ClassVar[int]
    API_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    model: str
    estimated_tokens: int
    max_tokens_per_call: int
    max_cost_per_day: float
    tenant_max_cost_per_day: float
    api_key_id: str
    def __init__(self, agent_id: _Optional[str] = ..., model: _Optional[str] = ..., estimated_tokens: _Optional[int] = ..., max_tokens_per_call: _Optional[int] = ..., max_cost_per_day: _Optional[float] = ..., tenant_max_cost_per_day: _Optional[float] = ..., api_key_id: _Optional[str] = ...) -> None: ...

class BudgetCheck(_message.Message):
    __slots__ = ("allowed", "reason", "agent", "tenant", "budget", "window", "retry_after_seconds")
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_SECONDS_FIELD_NUMBER: _ClassVar[int]
    allowed: bool
    reason: str
    agent: BudgetUsage
    tenant: BudgetUsage
    budget: str
    window: str
    retry_after_seconds: int
    def __init__(self, allowed: _Optional[bool] = ..., reason: _Optional[str] = ..., agent: _Optional[_Union[BudgetUsage, _Mapping]] = ..., tenant: _Optional[_Union[BudgetUsage, _Mapping]] = ..., budget: _Optional[str] = ..., window: _Optional[str] = ..., retry_after_seconds: _Optional[int] = ...) -> None: ...

class RecordUsageRequest(_message.Message):
    __slots__ = ("agent_id", "tokens", "cost_usd", "model", "api_key_id")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    API_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    tokens: int
    cost_usd: float
    model: str
    api_key_id: str
    def __init__(self, agent_id: _Optional[str] = ..., tokens: _Optional[int] = ..., cost_usd: _Optional[float] = ..., model: _Optional[str] = ..., api_key_id: _Optional[str] = ...) -> None: ...

class Budget(_message.Message):
    __slots__ = ("name", "tokens_per_day", "tokens_per_month", "cents_per_day", "cents_per_month", "tokens_today", "tokens_this_month", "usd_today", "usd_this_month", "tokens_remaining", "usd_remaining", "day_resets_at", "month_resets_at", "updated_at")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_DAY_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_MONTH_FIELD_NUMBER: _ClassVar[int]
    CENTS_PER_DAY_FIELD_NUMBER: _ClassVar[int]
    CENTS_PER_MONTH_FIELD_NUMBER: _ClassVar[int]
    TOKENS_TODAY_FIELD_NUMBER: _ClassVar[int]
    TOKENS_THIS_MONTH_FIELD_NUMBER: _ClassVar[int]
    USD_TODAY_FIELD_NUMBER: _ClassVar[int]
    USD_THIS_MONTH_FIELD_NUMBER: _ClassVar[int]
    TOKENS_REMAINING_FIELD_NUMBER: _ClassVar[int]
    USD_REMAINING_FIELD_NUMBER: _ClassVar[int]
    DAY_RESETS_AT_FIELD_NUMBER: _ClassVar[int]
    MONTH_RESETS_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    name: str
    tokens_per_day: int
    tokens_per_month: int
    cents_per_day: int
    cents_per_month: int
    tokens_today: int
    tokens_this_month: int
    usd_today: float
    usd_this_month: float
    tokens_remaining: int
    usd_remaining: float
    day_resets_at: _timestamp_pb2.Timestamp
    month_resets_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., tokens_per_day: _Optional[int] = ..., tokens_per_month: _Optional[int] = ..., cents_per_day: _Optional[int] = ..., cents_per_month: _Optional[int] = ..., tokens_today: _Optional[int] = ..., tokens_this_month: _Optional[int] = ..., usd_today: _Optional[float] = ..., usd_this_month: _Optional[float] = ..., tokens_remaining: _Optional[int] = ..., usd_remaining: _Optional[float] = ..., day_resets_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., month_resets_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SetBudgetRequest(_message.Message):
    __slots__ = ("budget_name", "budget", "update_mask")
    BUDGET_NAME_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    budget_name: str
    budget: Budget
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, budget_name: _Optional[str] = ..., budget: _Optional[_Union[Budget, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class ListBudgetsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListBudgetsResponse(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Budget]
    def __init__(self, items: _Optional[_Iterable[_Union[Budget, _Mapping]]] = ...) -> None: ...

class DeleteBudgetRequest(_message.Message):
    __slots__ = ("budget_name",)
    BUDGET_NAME_FIELD_NUMBER: _ClassVar[int]
    budget_name: str
    def __init__(self, budget_name: _Optional[str] = ...) -> None: ...

class Webhook(_message.Message):
    __slots__ = ("id", "tenant_id", "url", "events", "secret", "created_at", "updated_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    tenant_id: str
    url: str
    events: str
    secret: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., url: _Optional[str] = ..., events: _Optional[str] = ..., secret: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateWebhookRequest(_message.Message):
    __slots__ = ("webhook",)
    WEBHOOK_FIELD_NUMBER: _ClassVar[int]
    webhook: Webhook
    def __init__(self, webhook: _Optional[_Union[Webhook, _Mapping]] = ...) -> None: ...

class ListWebhooksRequest(_message.Message):
    __slots__ = ("page", "page_size")
    PAGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    page: int
    page_size: int
    def __init__(self, page: _Optional[int] = ..., page_size: _Optional[int] = ...) -> None: ...

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

class DeleteWebhookRequest(_message.Message):
    __slots__ = ("webhook_id",)
    WEBHOOK_ID_FIELD_NUMBER: _ClassVar[int]
    webhook_id: str
    def __init__(self, webhook_id: _Optional[str] = ...) -> None: ...
