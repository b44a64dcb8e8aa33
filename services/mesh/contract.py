"""The contract as data: every RPC with its REST bindings and authorization rule, read from the
descriptor set of the generated `agentmesh` package (a package resource). The gateway config, the OpenAPI document and the tests all read the
contract through this module, so a path or a scope is never written twice.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.api import annotations_pb2, field_behavior_pb2, http_pb2
from google.protobuf import descriptor_pb2

from mesh import resources

# A path variable: `{agent_id}` or `{path=**}`.
_VARIABLE = re.compile(r"\{([a-zA-Z0-9_.]+)(?:=([^}]*))?\}")
_HTTP_METHODS = ("get", "put", "post", "delete", "patch")


@dataclass(frozen=True)
class HttpBinding:
    """One REST route of an RPC, as written in its `google.api.http` option."""

    method: str  # upper case: GET, POST, ...
    template: str  # `/api/v1/agents/{agent_id}`
    body: str  # "", "*" or a field name

    @property
    def variables(self) -> list[str]:
        return [m.group(1) for m in _VARIABLE.finditer(self.template)]

    @property
    def openapi_path(self) -> str:
        return _VARIABLE.sub(lambda m: "{" + m.group(1) + "}", self.template)

    def matches(self, path: str) -> int | None:
        """Mirrors the transcoder's matching: None for no match, else the number of literal
        segments (more literals win, so `/tools/categories` beats `/tools/{tool_id}`)."""
        want = self.template.strip("/").split("/")
        got = path.split("?")[0].strip("/").split("/")
        literals = 0
        for i, segment in enumerate(want):
            variable = _VARIABLE.fullmatch(segment)
            if variable and variable.group(2) == "**":
                return literals if len(got) > i else None
            if i >= len(got):
                return None
            if variable:
                continue
            if segment != got[i]:
                return None
            literals += 1
        return literals if len(got) == len(want) else None


@dataclass(frozen=True)
class Rpc:
    """One RPC of the contract."""

    package: str  # agentmesh.agents.v1
    service: str  # AgentService
    name: str  # GetAgent
    input_type: str  # fully qualified, without leading dot
    output_type: str
    server_streaming: bool
    bindings: tuple[HttpBinding, ...]
    scope: str  # "" = any authenticated caller
    public: bool
    comment: str = ""
    # Service-to-service only: no REST binding, never routed by the gateway.
    internal: bool = False

    @property
    def exposed(self) -> bool:
        """Whether the gateway routes it (REST and native gRPC through the gateway)."""
        return bool(self.bindings) and not self.internal
    # The `http_body` option of an RPC returning google.api.HttpBody (None when absent).
    http_body: Any = None
    # Marked `(agentmesh.common.v1.idempotent)`: work with effects that takes its own time
    # (running a tool, an agent's conversation), deduplicated by Idempotency-Key.
    effect: bool = False
    # Marked `(agentmesh.common.v1.accepted)`: answers 202, the work goes on after it.
    accepted: bool = False
    # The gateway's rate limits the route counts against (`auth.rate_class`): "" (the tenant's
    # and the client IP's), "credentials" (per client IP, tight) or "unlimited" (probes).
    rate_class: str = ""

    @property
    def full_service(self) -> str:
        return f"{self.package}.{self.service}"

    @property
    def grpc_path(self) -> str:
        return f"/{self.full_service}/{self.name}"

    @property
    def backend(self) -> str:
        """The service process that owns the RPC: the package's second segment."""
        return self.package.split(".")[1]


@dataclass
class Contract:
    files: descriptor_pb2.FileDescriptorSet
    rpcs: list[Rpc] = field(default_factory=list)
    messages: dict[str, descriptor_pb2.DescriptorProto] = field(default_factory=dict)
    enums: dict[str, descriptor_pb2.EnumDescriptorProto] = field(default_factory=dict)
    comments: dict[str, str] = field(default_factory=dict)  # fq name -> leading comment

    @property
    def backends(self) -> list[str]:
        return sorted({r.backend for r in self.rpcs})

    @property
    def services(self) -> list[str]:
        """gRPC services with at least one RPC that the gateway routes."""
        return sorted({r.full_service for r in self.rpcs if not r.internal})

    @property
    def routed(self) -> list[Rpc]:
        """The RPCs the gateway routes (everything but internal ones)."""
        return [r for r in self.rpcs if not r.internal]

    def rpc(self, grpc_path: str) -> Rpc:
        return next(r for r in self.rpcs if r.grpc_path == grpc_path)

    def final_values(self, enum: str) -> frozenset[str]:
        """The values of an enum (`agentmesh.workflows.v1.ExecutionStatus`) marked
        `(agentmesh.common.v1.final)`: statuses after which nothing more happens."""
        from agentmesh.common.v1 import annotations_pb2

        return frozenset(value.name for value in self.enums[enum].value
                         if value.options.Extensions[annotations_pb2.final])

    def resolve(self, method: str, path: str) -> list[Rpc]:
        """The RPCs a REST request would reach: the bindings with the most literal segments."""
        scored = [(score, rpc) for rpc in self.rpcs for b in rpc.bindings
                  if b.method == method and (score := b.matches(path)) is not None]
        if not scored:
            return []
        best = max(score for score, _ in scored)
        return [rpc for score, rpc in scored if score == best]

    @staticmethod
    def field_behaviors(field_proto: descriptor_pb2.FieldDescriptorProto) -> set[int]:
        return set(field_proto.options.Extensions[field_behavior_pb2.field_behavior])


def _bindings(rule: http_pb2.HttpRule) -> list[HttpBinding]:
    found = []
    for method in _HTTP_METHODS:
        template = getattr(rule, method)
        if template:
            found.append(HttpBinding(method.upper(), template, rule.body))
    if rule.HasField("custom"):
        found.append(HttpBinding(rule.custom.kind.upper(), rule.custom.path, rule.body))
    for extra in rule.additional_bindings:
        found.extend(_bindings(extra))
    return found


def _comments(file: descriptor_pb2.FileDescriptorProto) -> dict[tuple[int, ...], str]:
    return {tuple(loc.path): loc.leading_comments.strip()
            for loc in file.source_code_info.location if loc.leading_comments}


def _collect_messages(contract: Contract, prefix: str, messages, comments, path) -> None:
    for i, message in enumerate(messages):
        name = f"{prefix}.{message.name}"
        contract.messages[name] = message
        contract.comments[name] = comments.get((*path, i), "")
        for j, fld in enumerate(message.field):
            contract.comments[f"{name}.{fld.name}"] = comments.get((*path, i, 2, j), "")
        for j, enum in enumerate(message.enum_type):
            contract.enums[f"{name}.{enum.name}"] = enum
            contract.comments[f"{name}.{enum.name}"] = comments.get((*path, i, 4, j), "")
        _collect_messages(contract, name, message.nested_type, comments, (*path, i, 3))


def load(path: Path | None = None) -> Contract:
    # Importing registers the custom `auth` option so that it parses as an extension.
    from agentmesh.common.v1 import annotations_pb2 as auth_pb2

    data = Path(path or resources.descriptor_set()).read_bytes()
    files = descriptor_pb2.FileDescriptorSet.FromString(data)
    contract = Contract(files=files)
    for file in files.file:
        comments = _comments(file)
        prefix = file.package
        _collect_messages(contract, prefix, file.message_type, comments, (4,))
        for i, enum in enumerate(file.enum_type):
            contract.enums[f"{prefix}.{enum.name}"] = enum
            contract.comments[f"{prefix}.{enum.name}"] = comments.get((5, i), "")
        if not file.package.startswith("agentmesh."):
            continue
        for s, service in enumerate(file.service):
            contract.comments[f"{prefix}.{service.name}"] = comments.get((6, s), "")
            for m, method in enumerate(service.method):
                options = method.options
                auth = options.Extensions[auth_pb2.auth]
                contract.rpcs.append(Rpc(
                    package=prefix,
                    service=service.name,
                    name=method.name,
                    input_type=method.input_type.lstrip("."),
                    output_type=method.output_type.lstrip("."),
                    server_streaming=method.server_streaming,
                    bindings=tuple(_bindings(options.Extensions[annotations_pb2.http])),
                    scope=auth.scope,
                    public=auth.public,
                    comment=comments.get((6, s, 2, m), ""),
                    internal=auth.internal,
                    http_body=(options.Extensions[auth_pb2.http_body]
                               if options.HasExtension(auth_pb2.http_body) else None),
                    effect=options.Extensions[auth_pb2.idempotent],
                    accepted=options.Extensions[auth_pb2.accepted],
                    rate_class=(auth_pb2.RateClass.Name(auth.rate_class)
                                .removeprefix("RATE_CLASS_").lower()
                                if auth.rate_class else ""),
                ))
                rpc = contract.rpcs[-1]
                if not options.HasExtension(auth_pb2.auth):
                    raise ValueError(f"{rpc.grpc_path} has no auth rule")
                if rpc.internal == bool(rpc.bindings):
                    raise ValueError(f"{rpc.grpc_path}: an internal RPC has no REST binding, "
                                     "every other RPC has one")
    return contract


@functools.lru_cache(maxsize=1)
def default() -> Contract:
    return load(resources.descriptor_set())
