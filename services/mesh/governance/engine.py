"""The one evaluation path: a tenant's Cedar policies, compiled once per policy-set version and
kept in memory, decide a request in the entity model below.

Entity model (docs/governance.md):
    principals  User::"<user id>", ApiKey::"<key id>", Agent::"<agent id or name>"
    actions     Action::"dispatch", "call_tool", "execute_workflow", "call_model", "approve"
    resources   Agent::"..", Tool::"..", Workflow::"..", Model::"..", Intent::".."
    context     arguments (the call's arguments), usage (tenant usage so far), time, scopes,
                intent

Outcome rules: an explicit `forbid` denies; a `permit` allows; when nothing matched (Cedar's
implicit deny) an agent's tool call is denied (default deny for an agent's tools) and any other
request — a person's or an API key's tool run included — is left to the caller's scopes. A tenant without policies is decided by scopes alone.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import cedarpy

from mesh.runtime.errors import InvalidArgument

ACTIONS = ("dispatch", "call_tool", "execute_workflow", "call_model", "approve")
PRINCIPAL_TYPES = ("User", "ApiKey", "Agent")
RESOURCE_TYPES = ("Agent", "Tool", "Workflow", "Model", "Intent")
_EMPTY_ENTITIES = cedarpy.Entities.from_json_str("[]")
_EOF = "unexpected end of input"


def _parse(text: str) -> Any:
    return cedarpy.PolicySet.from_str(text)


def syntax_error(text: str) -> tuple[int, str] | None:
    """(line, message) of the first syntax error in Cedar `text`, or None when it parses.

    Cedar's parser reports what went wrong but not where; the line is found by parsing
    growing prefixes: the first prefix that fails with something other than "unexpected end of
    input" ends on the offending line."""
    try:
        _parse(text)
        return None
    except ValueError as exc:
        message = str(exc)
    lines = text.splitlines()
    last_content = max((i for i, line in enumerate(lines) if line.strip()), default=0)
    for end in range(1, min(len(lines), 2000) + 1):
        try:
            _parse("\n".join(lines[:end]))
        except ValueError as exc:
            if str(exc) != _EOF:
                return end, str(exc)
    return last_content + 1, message


def check_policy_text(text: str, field_name: str = "cedar") -> int:
    """Validates Cedar text; returns how many statements it holds. A syntax error is
    INVALID_ARGUMENT naming the line."""
    if not text.strip():
        raise InvalidArgument(f"{field_name}: is required", reason="POLICY_INVALID",
                              field_violations=[(field_name, "is required")])
    error = syntax_error(text)
    if error is not None:
        line, message = error
        problem = f"line {line}: {message}"
        raise InvalidArgument(f"{field_name}: Cedar syntax error at {problem}",
                              reason="POLICY_SYNTAX_ERROR", details={"line": line},
                              field_violations=[(field_name, problem)])
    policies = _parse(text).to_pst().static_policies
    if not policies:
        raise InvalidArgument(f"{field_name}: holds no permit or forbid statement",
                              reason="POLICY_INVALID",
                              field_violations=[(field_name, "holds no permit or forbid statement")])
    return len(policies)


def shorthand(effect: str, intents: list[str], resources: list[str]) -> str:
    """Cedar for the contract's older shorthand (`effect` + `match`): one permit/forbid whose
    condition is the match. Intents match `dispatch` requests by intent name; resources are
    `kind/id` (`tools/search`)."""
    word = {"POLICY_EFFECT_ALLOW": "permit", "POLICY_EFFECT_DENY": "forbid"}[effect]
    kinds = {"agents": "Agent", "tools": "Tool", "workflows": "Workflow", "models": "Model",
             "intents": "Intent"}
    conditions = []

    def literal(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    def one_of(expr: str, values: list[str]) -> str:
        parts = []
        for value in values:
            if value.endswith("*"):
                parts.append(f"{expr} like {literal(value[:-1].replace('*', ''))[:-1]}*\"")
            else:
                parts.append(f"{expr} == {literal(value)}")
        return "(" + " || ".join(parts) + ")"

    if intents:
        conditions.append("context has intent && " + one_of("context.intent", intents))
    if resources:
        options = []
        for item in resources:
            kind, _, ident = item.partition("/")
            if kind not in kinds or not ident:
                raise InvalidArgument(
                    f"match.resources: {item!r} is not kind/id with kind one of "
                    f"{', '.join(kinds)}", reason="POLICY_INVALID",
                    field_violations=[("match.resources", f"{item!r} is not kind/id")])
            if ident == "*":
                options.append(f"resource is {kinds[kind]}")
            else:
                options.append(f"resource == {kinds[kind]}::{literal(ident)}")
        conditions.append("(" + " || ".join(options) + ")")
    when = f" when {{ {' && '.join(conditions)} }}" if conditions else ""
    return f"{word}(principal, action, resource){when};"


def cedar_value(value: Any) -> Any:
    """A JSON value Cedar accepts: Cedar has no floats, so whole numbers become Longs and other
    numbers strings; nulls are dropped."""
    if isinstance(value, bool) or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < 2 ** 63:
            return int(value)
        return repr(value)
    if isinstance(value, dict):
        return {str(k): cedar_value(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [cedar_value(v) for v in value if v is not None]
    return str(value)


@dataclass(frozen=True)
class CompiledPolicies:
    """A tenant's enabled policies at one policy-set version, parsed once."""

    version: int
    policy_set: Any  # cedarpy.PolicySet, or None when the tenant has no enabled policy
    labels: dict[str, str]  # Cedar's policyN -> "name@version"
    ids: dict[str, str]  # Cedar's policyN -> policy id

    @classmethod
    def build(cls, version: int, policies: list[tuple[str, str, int, str]]) -> "CompiledPolicies":
        """`policies`: (policy id, name, version, cedar text), in a stable order."""
        labels, ids, texts = {}, {}, []
        index = 0
        for policy_id, name, policy_version, text in policies:
            count = len(_parse(text).to_pst().static_policies)
            for _ in range(count):
                labels[f"policy{index}"] = f"{name}@{policy_version}"
                ids[f"policy{index}"] = policy_id
                index += 1
            texts.append(text)
        policy_set = _parse("\n".join(texts)) if texts else None
        return cls(version, policy_set, labels, ids)


@dataclass
class Request:
    principal_type: str
    principal_id: str
    action: str
    resource_type: str
    resource_id: str
    arguments: dict[str, Any] = field(default_factory=dict)
    scopes: frozenset[str] = frozenset()
    intent: str = ""
    usage: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if self.action not in ACTIONS:
            raise InvalidArgument(f"action: must be one of {', '.join(ACTIONS)}",
                                  field_violations=[("action", f"must be one of {', '.join(ACTIONS)}")])
        if self.principal_type not in PRINCIPAL_TYPES:
            raise InvalidArgument(
                f"principal_type: must be one of {', '.join(PRINCIPAL_TYPES)}",
                field_violations=[("principal_type", "unknown principal type")])
        if self.resource_type not in RESOURCE_TYPES:
            raise InvalidArgument(
                f"resource_type: must be one of {', '.join(RESOURCE_TYPES)}",
                field_violations=[("resource_type", "unknown resource type")])
        if not self.resource_id:
            raise InvalidArgument("resource_id: is required",
                                  field_violations=[("resource_id", "is required")])

    def cedar(self, now: datetime | None = None) -> dict[str, Any]:
        now = now or datetime.now(UTC)
        return {
            "principal": {"type": self.principal_type, "id": self.principal_id},
            "action": {"type": "Action", "id": self.action},
            "resource": {"type": self.resource_type, "id": self.resource_id},
            "context": {
                "arguments": cedar_value(self.arguments),
                "usage": cedar_value(self.usage),
                "time": {"epoch": int(now.timestamp()), "hour": now.hour, "minute": now.minute,
                         "weekday": now.isoweekday()},
                "scopes": sorted(self.scopes),
                "intent": self.intent,
            },
        }


@dataclass
class Outcome:
    allowed: bool
    reason: str
    matching: list[str]
    policy_ids: list[str]
    errors: list[str]
    version: int
    micros: int


def _micros_since(started_ns: int) -> int:
    """Whole microseconds since `started_ns`, rounded up: a decision without policies takes
    well under one, and 0 would read as "not measured" (seed 002's decision_time_ms)."""
    return -(-(time.perf_counter_ns() - started_ns) // 1000)


def evaluate(compiled: CompiledPolicies | None, request: Request,
             scope_ok: bool = True) -> Outcome:
    """Decides `request` with `compiled` (None or empty: scopes alone)."""
    started = time.perf_counter_ns()
    if compiled is None or compiled.policy_set is None:
        allowed = scope_ok
        reason = "Request authorized" if allowed else "missing scope"
        return Outcome(allowed, reason + (" (no policies: scopes only)" if allowed else ""), [],
                       [], [], compiled.version if compiled else 0,
                       _micros_since(started))
    result = cedarpy.is_authorized(request.cedar(), compiled.policy_set, _EMPTY_ENTITIES)
    reasons = list(result.diagnostics.reasons)
    errors = list(result.diagnostics.errors)
    matching = [compiled.labels.get(r, r) for r in reasons]
    ids = list(dict.fromkeys(compiled.ids[r] for r in reasons if r in compiled.ids))
    if result.decision == cedarpy.Decision.NoDecision:
        allowed, reason = False, "policy evaluation failed: " + "; ".join(errors)
    elif result.allowed:
        allowed, reason = scope_ok, ("Request authorized by " + ", ".join(matching)
                                     if scope_ok else "missing scope")
    elif reasons:
        allowed, reason = False, "Denied by policy " + ", ".join(matching)
    elif request.action == "call_tool" and request.principal_type == "Agent":
        allowed, reason = False, "No policy permits this tool call (default deny for tools)"
    else:
        allowed, reason = scope_ok, ("Request authorized (no policy matched; scopes allow it)"
                                     if scope_ok else "missing scope")
    return Outcome(allowed, reason, matching, ids, errors, compiled.version,
                   _micros_since(started))


class PolicyCache:
    """Compiled policy sets per tenant and version, rechecked against the database after `ttl`
    seconds so that replicas converge on a change within that time."""

    def __init__(self, ttl: float = 2.0, max_tenants: int = 10000) -> None:
        self.ttl = ttl
        self.max_tenants = max_tenants
        self._entries: dict[str, tuple[float, CompiledPolicies]] = {}
        self._lock = threading.Lock()

    def fresh(self, tenant_id: str) -> CompiledPolicies | None:
        entry = self._entries.get(tenant_id)
        if entry is not None and time.monotonic() - entry[0] < self.ttl:
            return entry[1]
        return None

    def current(self, tenant_id: str, version: int) -> CompiledPolicies | None:
        """The entry for `version`, marked fresh again, or None when it must be compiled."""
        entry = self._entries.get(tenant_id)
        if entry is not None and entry[1].version == version:
            self._entries[tenant_id] = (time.monotonic(), entry[1])
            return entry[1]
        return None

    def put(self, tenant_id: str, compiled: CompiledPolicies) -> CompiledPolicies:
        with self._lock:
            if len(self._entries) >= self.max_tenants:
                oldest = min(self._entries, key=lambda k: self._entries[k][0])
                self._entries.pop(oldest, None)
            self._entries[tenant_id] = (time.monotonic(), compiled)
        return compiled

    def invalidate(self, tenant_id: str) -> None:
        self._entries.pop(tenant_id, None)

    def clear(self, pattern: str = "") -> int:
        """Drops the entries of the tenants matching `pattern` (all when empty)."""
        from mesh.runtime.caches import matching

        with self._lock:
            gone = matching(list(self._entries), pattern)
            for key in gone:
                self._entries.pop(key, None)
        return len(gone)
