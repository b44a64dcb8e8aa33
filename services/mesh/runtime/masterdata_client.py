"""The one place where other services read master data (models, prompts, constraints, secrets)
from the masterdata service over gRPC, turned into small plain records.

    md = MasterData(runtime.peers)
    model = await md.model("gpt-4o-mini")          # ModelSpec, prices per 1M tokens
    system = await md.render_prompt("support", {"customer": "ACME"})  # label production
    limits = await md.limits(["strict", "fast"])   # Limits, merged (the strictest wins)
    key = await md.reveal_secret("openai-key")     # the value; never logged, never returned

Everything that depends on the exact shape of `agentmesh.masterdata.v1` is in this module, so a
change of that contract is wired here only. Fields are read by name where the contract is still
settling (prices per 1k or per 1M tokens, `endpoint_url` or `base_url`, typed constraint bodies or
free-form `rules`); the secret value comes from the internal RPC `RevealSecret` of whichever
masterdata service declares it, or — until the generated code has one — from
`/agentmesh.masterdata.v1.SecretAccessService/RevealSecret` called with `GetSecretRequest` and
answering `Secret` (its `value`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import json_format, message_factory

from agentmesh.masterdata.v1 import masterdata_pb2 as md_pb
from agentmesh.masterdata.v1 import masterdata_pb2_grpc as md_grpc
from mesh.runtime import redaction
from mesh.runtime.context import current_service
from mesh.runtime.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from mesh.runtime.peers import Peers

SERVICE = "masterdata"
FALLBACK_REVEAL = "/agentmesh.masterdata.v1.SecretAccessService/RevealSecret"
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


@dataclass
class ModelSpec:
    id: str
    name: str
    provider: str
    model: str                      # the provider's model name ("gpt-4o-mini")
    base_url: str = ""
    secret_ref: str = ""
    input_per_1m: float = 0.0       # US dollars per million input tokens
    output_per_1m: float = 0.0
    context_window: int = 0
    max_output_tokens: int = 0
    parameters: dict[str, Any] = field(default_factory=dict)

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input_per_1m + completion_tokens * self.output_per_1m) / 1e6


@dataclass
class PromptSpec:
    name: str
    content: str
    defaults: dict[str, str] = field(default_factory=dict)
    required: set[str] = field(default_factory=set)

    def render(self, variables: dict[str, Any]) -> str:
        values = {**self.defaults, **{k: str(v) for k, v in variables.items()}}
        missing = sorted(n for n in self.required if n not in values)
        if missing:
            raise InvalidArgument(
                f"prompt {self.name!r} needs the variables {', '.join(missing)}; pass them in "
                "the interaction's context", reason="PROMPT_VARIABLES_MISSING",
                details={"prompt": self.name, "missing": ",".join(missing)},
                field_violations=[(f"context.{n}", "is required by the prompt") for n in missing])
        return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), self.content)


@dataclass
class Limits:
    """The constraints that bound an agent, merged: the smallest number and the narrowest
    tool set win."""

    max_steps: int | None = None
    max_tokens_per_call: int | None = None
    timeout_seconds: float | None = None
    allowed_tools: set[str] | None = None     # None: every tool of the agent
    denied_tools: set[str] = field(default_factory=set)
    sources: list[str] = field(default_factory=list)

    def merge(self, rules: dict[str, Any], source: str) -> None:
        def smaller(current, value, cast):
            if value in (None, "", 0):
                return current
            value = cast(value)
            return value if current is None else min(current, value)

        self.max_steps = smaller(self.max_steps, rules.get("max_steps"), int)
        self.max_tokens_per_call = smaller(
            self.max_tokens_per_call,
            rules.get("max_tokens_per_call", rules.get("max_tokens")), int)
        self.timeout_seconds = smaller(
            self.timeout_seconds, rules.get("timeout_seconds", rules.get("max_duration_seconds")),
            float)
        allowed = rules.get("allowed_tools")
        if allowed:
            allowed = {str(t) for t in allowed}
            self.allowed_tools = allowed if self.allowed_tools is None \
                else self.allowed_tools & allowed
        self.denied_tools |= {str(t) for t in rules.get("denied_tools") or ()}
        self.sources.append(source)


def _translate(error: grpc.aio.AioRpcError, noun: str, key: str) -> Exception:
    code = error.code()
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFound(f"{noun} {key!r} not found", reason=f"{noun.upper()}_NOT_FOUND",
                        details={noun: key})
    if code in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.DEADLINE_EXCEEDED):
        return Unavailable(f"the masterdata service cannot answer for {noun} {key!r}: "
                           f"{code.name}", reason="MASTERDATA_UNAVAILABLE", details={noun: key})
    return FailedPrecondition(f"reading {noun} {key!r} failed: {error.details()}",
                              reason=f"{noun.upper()}_UNREADABLE", details={noun: key})


def _flat(message) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def _price(d: dict[str, Any], side: str) -> float:
    """Per-1M price of `side` ("input"/"output") from whatever pricing fields the model has."""
    pricing = {**d, **(d.get("pricing") or {})}
    for key, value in pricing.items():
        if side in key and isinstance(value, int | float):
            if "1k" in key or "thousand" in key:
                return float(value) * 1000
            if "1m" in key or "million" in key:
                return float(value)
    return 0.0


def _set_first(request, names: tuple[str, ...], value: str) -> None:
    for name in names:
        if name in request.DESCRIPTOR.fields_by_name:
            setattr(request, name, value)
            return
    raise RuntimeError(f"{request.DESCRIPTOR.full_name} has none of the fields {names}")


class MasterData:
    def __init__(self, peers: Peers, timeout: float = 10.0) -> None:
        self.peers = peers
        self.timeout = timeout

    async def model(self, key: str) -> ModelSpec:
        stub = self.peers.stub(md_grpc.ModelServiceStub)
        try:
            model = await stub.GetModel(md_pb.GetModelRequest(model_id=key), timeout=self.timeout)
        except grpc.aio.AioRpcError as error:
            raise _translate(error, "model", key) from None
        d = _flat(model)
        if d.get("status", "").endswith("INACTIVE"):
            raise FailedPrecondition(f"model {model.name!r} is inactive", reason="MODEL_INACTIVE",
                                     details={"model": model.name})
        return ModelSpec(
            id=model.id, name=model.name, provider=d.get("provider", ""),
            model=d.get("model_id") or d.get("model_name") or model.name,
            base_url=d.get("base_url") or d.get("endpoint_url") or "",
            secret_ref=d.get("secret_ref") or d.get("api_key_secret_ref") or "",
            input_per_1m=_price(d, "input"), output_per_1m=_price(d, "output"),
            context_window=int(d.get("context_window") or 0),
            max_output_tokens=int(d.get("max_output_tokens") or 0),
            parameters=dict(d.get("default_parameters") or {}))

    async def render_prompt(self, key: str, variables: dict[str, Any],
                            label: str = "production", *, label_required: bool = False) -> str:
        """The prompt's text at `label`, rendered with `variables` by the masterdata service
        (RenderPrompt) or, where it has no such RPC, here from GetPrompt. A prompt without the
        label is used at its current version unless `label_required`."""
        if "RenderPromptRequest" in md_pb.DESCRIPTOR.message_types_by_name:
            stub = self.peers.stub(md_grpc.PromptServiceStub)
            request = md_pb.RenderPromptRequest(prompt_id=key, label=label, variables={
                k: v if isinstance(v, str) else json.dumps(v) for k, v in variables.items()})
            try:
                try:
                    return (await stub.RenderPrompt(request, timeout=self.timeout)).content
                except grpc.aio.AioRpcError as error:
                    if error.code() != grpc.StatusCode.NOT_FOUND or not label:
                        raise
                    if label_required:
                        raise FailedPrecondition(
                            f"prompt {key!r} has no version labelled {label!r}",
                            reason="PROMPT_LABEL_NOT_FOUND",
                            details={"prompt": key, "label": label}) from None
                    request.label = ""   # no such label: the current version
                    return (await stub.RenderPrompt(request, timeout=self.timeout)).content
            except grpc.aio.AioRpcError as error:
                if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
                    raise InvalidArgument(
                        f"prompt {key!r} cannot be rendered with the interaction's context: "
                        f"{error.details()}", reason="PROMPT_VARIABLES_MISSING",
                        details={"prompt": key}) from None
                if error.code() != grpc.StatusCode.UNIMPLEMENTED:
                    raise _translate(error, "prompt", key) from None
        return (await self.prompt(key, label)).render(variables)

    async def prompt(self, key: str, label: str = "production") -> PromptSpec:
        stub = self.peers.stub(md_grpc.PromptServiceStub)
        request = md_pb.GetPromptRequest(prompt_id=key)
        if "label" in request.DESCRIPTOR.fields_by_name:
            request.label = label
        try:
            prompt = await stub.GetPrompt(request, timeout=self.timeout)
        except grpc.aio.AioRpcError as error:
            raise _translate(error, "prompt", key) from None
        variables = list(getattr(prompt, "variables", ()))
        return PromptSpec(
            name=prompt.name, content=prompt.content,
            defaults={v.name: v.default_value for v in variables if v.default_value},
            required={v.name for v in variables if v.required and not v.default_value})

    async def limits(self, keys: list[str]) -> Limits:
        limits = Limits()
        if not keys:
            return limits
        stub = self.peers.stub(md_grpc.ConstraintServiceStub)
        for key in keys:
            try:
                constraint = await stub.GetConstraint(
                    md_pb.GetConstraintRequest(constraint_id=key), timeout=self.timeout)
            except grpc.aio.AioRpcError as error:
                raise _translate(error, "constraint", key) from None
            d = _flat(constraint)
            if d.get("enabled") is False or d.get("enforcement", "").endswith(("_WARN", "_LOG")):
                continue   # only blocking constraints stop an interaction
            rules: dict[str, Any] = {}
            for value in d.values():   # a typed body, whatever its field name
                if isinstance(value, dict):
                    rules.update(value)
            rules.update({k: v for k, v in d.items() if not isinstance(v, dict)})
            kind = d.get("constraint_type", "")
            if kind.endswith("_ALLOWED_TOOLS") and "tools" in rules:
                rules["allowed_tools"] = rules["tools"]
            elif kind.endswith("_DENIED_TOOLS") and "tools" in rules:
                rules["denied_tools"] = rules["tools"]
            limits.merge(rules, constraint.name or key)
        return limits

    async def secret_exists(self, name: str) -> bool:
        stub = self.peers.stub(md_grpc.SecretServiceStub)
        try:
            await stub.GetSecret(md_pb.GetSecretRequest(secret_id=name), timeout=self.timeout)
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return False
            raise _translate(error, "secret", name) from None
        return True

    async def reveal_secret(self, name: str, purpose: str = "") -> str:
        """The secret's value, asked for by this service (`current_service`) for `purpose`."""
        call = self._reveal_call()
        request_class, response_field = self._reveal_types()
        request = request_class()
        _set_first(request, ("name", "secret_id", "secret_name", "secret"), name)
        fields = request.DESCRIPTOR.fields_by_name
        if "requested_by" in fields:
            request.requested_by = current_service.get() or "agentmesh"
        if "purpose" in fields:
            request.purpose = purpose
        try:
            answer = await call(request, timeout=self.timeout)
        except grpc.aio.AioRpcError as error:
            raise _translate(error, "secret", name) from None
        value = getattr(answer, response_field)
        redaction.remember(value)  # masked out of this process's logs from now on
        return value

    # ---- how RevealSecret is reached ----------------------------------------------------------
    @classmethod
    def reveal_route(cls) -> tuple[str, type, type, str]:
        """(method path, request class, response class, value field) of RevealSecret."""
        method = cls._reveal_method()
        request_class, field_name = cls._reveal_types()
        if method is None:
            return FALLBACK_REVEAL, request_class, md_pb.Secret, field_name
        return (f"/{method.containing_service.full_name}/RevealSecret", request_class,
                message_factory.GetMessageClass(method.output_type), field_name)

    @staticmethod
    def _reveal_method():
        for service in md_pb.DESCRIPTOR.services_by_name.values():
            if "RevealSecret" in service.methods_by_name:
                return service.methods_by_name["RevealSecret"]
        return None

    def _reveal_call(self):
        path, request_class, response_class, _ = self.reveal_route()
        return self.peers.channel(SERVICE).unary_unary(
            path, request_serializer=request_class.SerializeToString,
            response_deserializer=response_class.FromString)

    @classmethod
    def _reveal_types(cls):
        method = cls._reveal_method()
        if method is None:
            return md_pb.GetSecretRequest, "value"
        output = method.output_type
        field_name = "value" if "value" in output.fields_by_name else next(
            f.name for f in output.fields if f.type == f.TYPE_STRING)
        return message_factory.GetMessageClass(method.input_type), field_name
