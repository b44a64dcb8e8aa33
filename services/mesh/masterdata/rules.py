"""The closed sets the masterdata service validates against: constraint types with the JSON
schema of each type's `rules`, and model providers with what each needs. The agent runtime and
governance enforce constraints by these shapes, so a constraint is checked when it is written."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator

from mesh.runtime.limits import When

_INT = {"type": "integer", "minimum": 1}
_NAMES = {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1,
          "uniqueItems": True}


def _obj(properties: dict[str, Any], required: list[str] | None = None, **extra: Any) -> dict:
    return {"type": "object", "properties": properties, "required": required or [],
            "additionalProperties": False, **extra}


# type -> (description, JSON schema of `rules`)
CONSTRAINT_TYPES: dict[str, tuple[str, dict[str, Any]]] = {
    "CONSTRAINT_TYPE_RESOURCE_LIMIT": (
        "Bounds resources: memory, CPU, concurrent calls.",
        _obj({"max_memory_mb": _INT, "max_cpu_cores": {"type": "number", "exclusiveMinimum": 0},
              "max_concurrent_calls": _INT}, minProperties=1)),
    "CONSTRAINT_TYPE_RATE_LIMIT": (
        "At most max_requests in every window_seconds.",
        _obj({"max_requests": _INT, "window_seconds": _INT}, ["max_requests", "window_seconds"])),
    "CONSTRAINT_TYPE_CONTENT_POLICY": (
        "Terms or categories that may not appear in input or output, and an output length cap.",
        _obj({"blocked_terms": _NAMES, "blocked_categories": _NAMES, "max_output_chars": _INT},
             minProperties=1)),
    "CONSTRAINT_TYPE_COST_LIMIT": (
        "At most max_cost_usd and/or max_tokens per period (call, hour, day or month).",
        _obj({"max_cost_usd": {"type": "number", "exclusiveMinimum": 0}, "max_tokens": _INT,
              "period": {"enum": ["call", "hour", "day", "month"]}}, ["period"],
             anyOf=[{"required": ["max_cost_usd"]}, {"required": ["max_tokens"]}])),
    "CONSTRAINT_TYPE_TIME_LIMIT": (
        "A run may last at most max_duration_seconds.",
        _obj({"max_duration_seconds": _INT}, ["max_duration_seconds"])),
    "CONSTRAINT_TYPE_CUSTOM": (
        "Any other rule; rules is a free-form object.",
        {"type": "object"}),
    "CONSTRAINT_TYPE_MAX_TOKENS_PER_CALL": (
        "At most max_tokens tokens (prompt plus completion) in one model call.",
        _obj({"max_tokens": _INT}, ["max_tokens"])),
    "CONSTRAINT_TYPE_MAX_COST_PER_DAY": (
        "At most max_cost_usd US dollars of model cost per UTC day.",
        _obj({"max_cost_usd": {"type": "number", "exclusiveMinimum": 0}}, ["max_cost_usd"])),
    "CONSTRAINT_TYPE_ALLOWED_TOOLS": (
        "Only the tools named may be called.", _obj({"tools": _NAMES}, ["tools"])),
    "CONSTRAINT_TYPE_DENIED_TOOLS": (
        "The tools named may never be called.", _obj({"tools": _NAMES}, ["tools"])),
    "CONSTRAINT_TYPE_MAX_STEPS": (
        "At most max_steps reasoning or tool steps in one run.",
        _obj({"max_steps": {"type": "integer", "minimum": 1, "maximum": 10000}}, ["max_steps"])),
    "CONSTRAINT_TYPE_TIMEOUT_SECONDS": (
        "A run stops after timeout_seconds.",
        _obj({"timeout_seconds": {"type": "integer", "minimum": 1, "maximum": 86400}},
             ["timeout_seconds"])),
    "CONSTRAINT_TYPE_REQUIRE_APPROVAL_FOR": (
        "The actions named (tool names, or deploy, delete, ...) wait for a human approval.",
        _obj({"actions": _NAMES, "approvers": _NAMES}, ["actions"])),
}
_VALIDATORS = {name: Draft202012Validator(schema) for name, (_, schema) in CONSTRAINT_TYPES.items()}


def rule_problems(constraint_type: str, rules: dict[str, Any]) -> list[tuple[str, str]]:
    """(field path, problem) for each way `rules` does not fit the type, e.g.
    ("rules.max_tokens", "-1 is less than the minimum of 1")."""
    problems = []
    for error in sorted(_VALIDATORS[constraint_type].iter_errors(rules), key=lambda e: e.path):
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.path)
        problems.append((f"rules{path}", error.message))
    return problems


@dataclass(frozen=True)
class Provider:
    name: str
    description: str
    secret_required: bool
    default_endpoint_url: str = ""
    required_parameters: tuple[str, ...] = field(default=())

    @property
    def endpoint_url_required(self) -> bool:
        return not self.default_endpoint_url


PROVIDERS: dict[str, Provider] = {p.name: p for p in (
    Provider("anthropic", "Anthropic Messages API.", True, "https://api.anthropic.com"),
    Provider("azure_openai", "Azure OpenAI: endpoint_url is the resource endpoint, model_id the "
             "deployment name, default_parameters.api_version the API version.", True,
             required_parameters=("api_version",)),
    Provider("ollama", "A local Ollama server; no API key.", False, "http://127.0.0.1:11434"),
    Provider("openai", "OpenAI API.", True, "https://api.openai.com/v1"),
    Provider("openai_compatible", "Any server speaking the OpenAI chat completions API (vLLM, "
             "LM Studio, a gateway); secret_ref when it needs a key.", False),
)}


def _rules_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """`then` for a constraint type: `rules` fits the type's schema; it may be left out (read
    as `{}`) only when `{}` fits."""
    if Draft202012Validator(schema).is_valid({}):
        return {"properties": {"rules": {"anyOf": [schema, {"type": "null"}]}}}
    return {"required": ["rules"], "properties": {"rules": schema}}


def _provider_schema(provider: Provider) -> dict[str, Any]:
    needed, properties = [], {}
    if provider.secret_required:
        needed.append("secret_ref")
        properties["secret_ref"] = {"type": "string", "minLength": 1}
    if provider.endpoint_url_required:
        needed.append("endpoint_url")
        properties["endpoint_url"] = {"type": "string", "minLength": 1}
    if provider.required_parameters:
        needed.append("default_parameters")
        properties["default_parameters"] = {"type": "object",
                                            "required": list(provider.required_parameters)}
    return {"required": needed, "properties": properties}


# The rules above that the OpenAPI document states too (mesh.runtime.limits.When).
CONDITIONS: dict[str, tuple[When, ...]] = {
    "agentmesh.masterdata.v1.Constraint": tuple(
        When("constraint_type", (name,), _rules_schema(schema))
        for name, (_, schema) in CONSTRAINT_TYPES.items()),
    "agentmesh.masterdata.v1.Model": tuple(
        When("provider", (p.name,), _provider_schema(p)) for p in PROVIDERS.values()
        if p.secret_required or p.endpoint_url_required or p.required_parameters),
}
