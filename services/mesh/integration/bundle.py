"""A tenant's setup as one versioned bundle: export (read from the owning services over gRPC),
validate (every problem at once) and import (apply with a conflict strategy).

    {"kind": "agentmesh.bundle", "version": 1,
     "secrets": [...], "skills": [...], "constraints": [...], "models": [...],
     "prompts": [...], "tools": [...], "templates": [...], "agents": [...],
     "workflows": [...], "policies": [...], "alert_rules": [...], "budgets": [...],
     "decision_webhooks": [...], "api_connections": [...], "webhooks": [...]}

Each entity is its resource's JSON without output-only fields (ids, tenant, timestamps,
status set by the platform), sorted by name, so an export of an import of an export is the same
bundle. References between entities are names (ids are replaced on export). Prompts and
templates carry their `versions` (oldest first) and `labels`; agents, workflows and policies
carry their `versions` (oldest first: each the resource's versioned fields at that version) and
`version_labels` (their `labels` are the user's own key-value labels). A workflow carries its
`schedules`. A secret carries its metadata and `"value": "<fill in>"`: the value never leaves
masterdata, and importing a secret the target tenant lacks needs the value filled in. A webhook
carries `"secret": "<fill in>"` the same way: imported with the placeholder, it gets a new
signing secret.
"""

from __future__ import annotations

import copy
import importlib
import json
import re
from dataclasses import dataclass
from typing import Any

from google.protobuf import field_mask_pb2, json_format
from google.protobuf.message import Message

from agentmesh.agents.v1 import agents_pb2_grpc
from agentmesh.governance.v1 import governance_pb2_grpc
from agentmesh.masterdata.v1 import masterdata_pb2_grpc
from agentmesh.observability.v1 import observability_pb2_grpc
from agentmesh.templates.v1 import templates_pb2_grpc
from agentmesh.tools.v1 import tools_pb2_grpc
from agentmesh.workflows.v1 import workflows_pb2_grpc
from mesh.integration import calls, connections
from mesh.runtime import errors, limits
from mesh.runtime.convert import plain, writable
from mesh.runtime.errors import InvalidArgument
from mesh.runtime.tables import is_uuid

BUNDLE_KIND = "agentmesh.bundle"
BUNDLE_VERSION = 1
SECRET_PLACEHOLDER = "<fill in>"
MAX_ENTITIES = 1000  # per kind
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# An alert rule's name: any text of 1-100 characters with something other than blanks.
_TEXT_NAME = re.compile(r"^(?=.*\S).{1,100}$", re.DOTALL)
# A decision webhook's name: its URL.
_URL_NAME = re.compile(r"^https?://\S{1,1990}$")
# A budget's name: its scope.
_BUDGET_NAME = re.compile(r"^(tenant|agent:[A-Za-z0-9._-]{1,100}|api_key:[A-Za-z0-9._-]{1,100})$")


@dataclass(frozen=True)
class Kind:
    key: str          # the bundle's key ("agents")
    noun: str         # the request fields' noun ("agent")
    cls: str          # the message class ("Agent")
    service: str      # the owning service
    stub: type
    name_field: str = "name"
    # How the name is checked (default: letters, digits, '.', '_', '-', not a UUID), and what
    # a refusal says.
    name_pattern: re.Pattern = _NAME
    name_rule: str = "1-100 letters, digits, '.', '_' or '-', not a UUID"
    # Its versions in the bundle: "" none; "content" (prompts, templates: the versioned fields
    # live only in `versions`, labels in `labels`); "snapshot" (agents, workflows: each version
    # the whole resource, labels in `version_labels`); "policy" (each version `cedar` and
    # `enabled`, labels in `version_labels`).
    versions: str = ""
    # Whether an import may rename a copy (a budget's name is its scope: no).
    renamable: bool = True

    plural: str = ""   # the class's plural when not `cls` + "s"

    @property
    def list_method(self) -> str:
        return f"List{self.plural or self.cls + 's'}"

    @property
    def labels_key(self) -> str:
        return "labels" if self.versions == "content" else "version_labels"

    @property
    def module(self):
        return importlib.import_module(f"agentmesh.{self.service}.v1.{self.service}_pb2")

    @property
    def message(self) -> type[Message]:
        return getattr(self.module, self.cls)

    def request(self, method: str, **fields) -> Message:
        return getattr(self.module, f"{method}Request")(**fields)


KINDS = [
    Kind("secrets", "secret", "Secret", "masterdata", masterdata_pb2_grpc.SecretServiceStub),
    Kind("skills", "skill", "Skill", "masterdata", masterdata_pb2_grpc.SkillServiceStub),
    Kind("constraints", "constraint", "Constraint", "masterdata",
         masterdata_pb2_grpc.ConstraintServiceStub),
    Kind("models", "model", "Model", "masterdata", masterdata_pb2_grpc.ModelServiceStub),
    Kind("prompts", "prompt", "Prompt", "masterdata", masterdata_pb2_grpc.PromptServiceStub,
         versions="content"),
    Kind("tools", "tool", "Tool", "tools", tools_pb2_grpc.ToolServiceStub),
    Kind("templates", "template", "Template", "templates", templates_pb2_grpc.TemplateServiceStub,
         versions="content"),
    Kind("agents", "agent", "Agent", "agents", agents_pb2_grpc.AgentServiceStub,
         versions="snapshot"),
    Kind("workflows", "workflow", "Workflow", "workflows", workflows_pb2_grpc.WorkflowServiceStub,
         name_field="slug", versions="snapshot"),
    Kind("policies", "policy", "Policy", "governance", governance_pb2_grpc.GovernanceServiceStub,
         versions="policy", plural="Policies"),
    Kind("alert_rules", "alert", "Alert", "observability",
         observability_pb2_grpc.ObservabilityServiceStub, name_pattern=_TEXT_NAME,
         name_rule="1-100 characters, not only blanks"),
    Kind("budgets", "budget", "Budget", "governance", governance_pb2_grpc.GovernanceServiceStub,
         name_pattern=_BUDGET_NAME, name_rule="tenant, agent:<name> or api_key:<name>",
         renamable=False),
    # Governance's decision webhooks, named by their URL (the signing secret is made anew).
    Kind("decision_webhooks", "webhook", "Webhook", "governance",
         governance_pb2_grpc.GovernanceServiceStub, name_field="url", name_pattern=_URL_NAME,
         name_rule="an http or https URL", renamable=False),
]
BY_KEY = {k.key: k for k in KINDS}
LOCAL_KINDS = ("api_connections", "webhooks")
ALL_KEYS = [k.key for k in KINDS] + list(LOCAL_KINDS)
# Versioned kinds whose versioned fields live in each version instead of the entity.
_VERSIONED = {"prompts": ("content", "variables"), "templates": ("content", "parameters")}
# What a snapshot version keeps of the resource message it holds (AgentVersion.agent, ...).
_SNAPSHOT_FIELD = {"agents": "agent", "workflows": "workflow"}
# A policy version's fields.
_POLICY_VERSION = ("cedar", "enabled")
# What a workflow's schedule carries.
_SCHEDULE = ("cron", "timezone", "inputs", "priority", "label", "version")
WEBHOOK_FIELDS = ("name", "url", "events", "active")
# Fields whose values are names of other entities: (kind key of the target, path).
REFERENCES: dict[str, list[tuple[str, str]]] = {
    "agents": [("tools", "tools[]"), ("skills", "skills[]"), ("constraints", "constraints[]"),
               ("prompts", "prompt_id"), ("models", "model")],
    "workflows": [("agents", "steps[].agent.agent_id"), ("tools", "steps[].tool.tool_id")],
    "models": [("secrets", "secret_ref")],
    "tools": [("secrets", "secret_refs[]"), ("secrets", "config.auth.secret")],
    "api_connections": [("secrets", "secret_ref")],
}


def _get(node: Any, parts: list[str]):
    """(container, key) pairs of every value at the path (`a[].b` walks a list)."""
    if not parts:
        return
    head, rest = parts[0], parts[1:]
    is_list = head.endswith("[]")
    name = head[:-2] if is_list else head
    if not isinstance(node, dict) or name not in node:
        return
    if is_list:
        items = node[name]
        if not isinstance(items, list):
            return
        for i, item in enumerate(items):
            if rest:
                yield from _get(item, rest)
            else:
                yield items, i
    elif rest:
        yield from _get(node[name], rest)
    else:
        yield node, name


def rewrite_references(key: str, entity: dict[str, Any], names: dict[str, dict[str, str]]) -> None:
    """Replaces each reference found in `names[target kind]` (old -> new) in place."""
    for target, path in REFERENCES.get(key, ()):
        mapping = names.get(target) or {}
        for container, slot in list(_get(entity, path.split("."))):
            value = container[slot]
            if isinstance(value, str) and value in mapping:
                container[slot] = mapping[value]
    if key in _SNAPSHOT_FIELD:   # each version refers as the resource does
        for version in entity.get("versions") or []:
            if isinstance(version, dict):
                rewrite_references(key, version, names)


def references(key: str, entity: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(target kind, path, value) of every reference of an entity."""
    found = []
    for target, path in REFERENCES.get(key, ()):
        for container, slot in _get(entity, path.split(".")):
            if isinstance(container[slot], str) and container[slot]:
                found.append((target, path, container[slot]))
    return found


def entity_dict(message: Message, drop: tuple[str, ...] = ()) -> dict[str, Any]:
    keep = writable(type(message))
    data = calls.to_dict(message)
    return {k: plain(v) for k, v in data.items() if k in keep and k not in drop}


def schedule_key(schedule: dict[str, Any]) -> str:
    """A schedule's identity within its workflow (it has no name): its fields as JSON."""
    return json.dumps({k: schedule.get(k) for k in _SCHEDULE}, sort_keys=True, default=str)


def name_of(key: str, entity: dict[str, Any]) -> str:
    field = BY_KEY[key].name_field if key in BY_KEY else "name"
    return str(entity.get(field) or "")


# ---- export ---------------------------------------------------------------------------------
async def read_kind(peers, kind: Kind) -> list[Message]:
    stub = peers.stub(kind.stub)
    if kind.key == "budgets":   # one answer, no pages; "tenant" is listed even when unset
        answer = await calls.call(kind.service, stub.ListBudgets, kind.request("ListBudgets"))
        return [b for b in answer.items if b.tokens_per_day or b.tokens_per_month
                or b.cents_per_day or b.cents_per_month]
    return await calls.list_all(kind.service, getattr(stub, kind.list_method),
                                type(kind.request(kind.list_method)))


def _id(message: Message) -> str:
    """A message's id; a budget has none, its name is its key."""
    return getattr(message, "id", "") if "id" in message.DESCRIPTOR.fields_by_name \
        else getattr(message, "name")


async def _versions(peers, kind: Kind, message: Message) -> tuple[list[dict], dict[str, int]]:
    """The entity's versions, oldest first, and its version labels."""
    stub = peers.stub(kind.stub)
    method = getattr(stub, f"List{kind.cls}Versions")
    request_class = type(kind.request(f"List{kind.cls}Versions"))
    items = await calls.list_all(kind.service, method, request_class,
                                 **{f"{kind.noun}_id": message.id})
    versions = []
    for item in sorted(items, key=lambda v: v.version):
        if kind.versions == "snapshot":
            data = entity_dict(getattr(item, _SNAPSHOT_FIELD[kind.key]))
        elif kind.versions == "policy":
            data = {k: plain(v) for k, v in calls.to_dict(item).items() if k in _POLICY_VERSION}
            data.setdefault("enabled", False)
        else:
            data = {k: plain(v) for k, v in calls.to_dict(item).items()
                    if k in writable(type(item))}
        data["version"] = item.version
        versions.append(data)
    labels = message.labels if kind.versions == "content" else message.version_labels
    return versions, dict(sorted(labels.items()))


async def _schedules(peers, workflow: Message) -> list[dict[str, Any]]:
    stub = peers.stub(workflows_pb2_grpc.WorkflowServiceStub)
    request_class = type(BY_KEY["workflows"].request("ListSchedules"))
    items = await calls.list_all("workflows", stub.ListSchedules, request_class,
                                 workflow_id=workflow.id)
    schedules = [{k: plain(v) for k, v in calls.to_dict(item).items() if k in _SCHEDULE}
                 for item in items]
    return sorted(schedules, key=schedule_key)


async def export(peers, api_connections: list[dict[str, Any]], kinds: list[str],
                 only: set[str], webhooks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    read: dict[str, list[Message]] = {}
    for kind in KINDS:
        # Every kind that can be referenced is read, to turn ids into names.
        if kind.key in kinds or any(kind.key == t for k in kinds for t, _ in REFERENCES.get(k, ())):
            read[kind.key] = await read_kind(peers, kind)
    id_names = {key: {_id(m): getattr(m, BY_KEY[key].name_field) for m in items}
                for key, items in read.items()}
    bundle: dict[str, Any] = {"kind": BUNDLE_KIND, "version": BUNDLE_VERSION}
    for kind in KINDS:
        if kind.key not in kinds:
            continue
        entities = []
        for message in read[kind.key]:
            name = getattr(message, kind.name_field)
            if only and _id(message) not in only and name not in only:
                continue
            if any(name_of(kind.key, e) == name for e in entities):
                continue   # two decision webhooks to one URL: one entity
            entity = entity_dict(message, _VERSIONED.get(kind.key, ()))
            if kind.key == "budgets":   # its name (scope) is output-only in the message
                entity = {"name": message.name, **entity}
            if kind.key == "secrets":
                entity["value"] = SECRET_PLACEHOLDER
            if kind.versions:
                entity["versions"], entity[kind.labels_key] = await _versions(peers, kind,
                                                                              message)
            if kind.key == "workflows":
                entity["schedules"] = await _schedules(peers, message)
            rewrite_references(kind.key, entity, id_names)
            entities.append(entity)
        bundle[kind.key] = sorted(entities, key=lambda e: name_of(kind.key, e))
    if "api_connections" in kinds:
        entities = [copy.deepcopy(c) for c in api_connections
                    if not only or c["name"] in only or c.get("id") in only]
        for entity in entities:
            entity.pop("id", None)
            rewrite_references("api_connections", entity, id_names)
        bundle["api_connections"] = sorted(entities, key=lambda e: e["name"])
    if "webhooks" in kinds:
        hooks = [{**{k: copy.deepcopy(h[k]) for k in WEBHOOK_FIELDS}, "secret": SECRET_PLACEHOLDER}
                 for h in webhooks or [] if not only or h["name"] in only or h.get("id") in only]
        bundle["webhooks"] = sorted(hooks, key=lambda e: e["name"])
    return bundle


# ---- validation -----------------------------------------------------------------------------
class Problems:
    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, field: str, text: str) -> None:
        if len(self.items) < 200:
            self.items.append((field, text))

    def raise_if_any(self) -> None:
        if self.items:
            first = f"{self.items[0][0]}: {self.items[0][1]}"
            more = f" (and {len(self.items) - 1} more)" if len(self.items) > 1 else ""
            raise InvalidArgument(f"the bundle is invalid: {first}{more}", reason="BUNDLE_INVALID",
                                  details={"problems": len(self.items)},
                                  field_violations=list(self.items))


def _parse(problems: Problems, where: str, data: Any, cls: type[Message]) -> Message | None:
    try:
        message = json_format.ParseDict(data, cls())
    except json_format.ParseError as exc:
        problems.add(where, str(exc).splitlines()[0][:300])
        return None
    except (ValueError, TypeError, AttributeError) as exc:
        problems.add(where, f"not a valid {cls.__name__}: {exc}"[:300])
        return None
    try:
        limits.check(message)
    except errors.InvalidArgument as exc:
        for field, text in exc.field_violations:
            problems.add(f"{where}.{field}", text)
        return None
    return message


def check_shape(bundle: Any) -> Problems:
    """Everything that can be checked without the target tenant."""
    problems = Problems()
    if not isinstance(bundle, dict):
        problems.add("data", "must be a bundle object as export writes it")
        return problems
    if bundle.get("kind", BUNDLE_KIND) != BUNDLE_KIND:
        problems.add("kind", f"must be {BUNDLE_KIND!r}")
    version = bundle.get("version")
    if version != BUNDLE_VERSION:
        problems.add("version", f"must be {BUNDLE_VERSION} (the bundle format version)")
    for key in bundle:
        if key not in ("kind", "version", *ALL_KEYS):
            problems.add(str(key)[:100], f"unknown section; known: {', '.join(ALL_KEYS)}")
    for key in ALL_KEYS:
        entities = bundle.get(key)
        if entities is None:
            continue
        if not isinstance(entities, list):
            problems.add(key, "must be a list")
            continue
        if len(entities) > MAX_ENTITIES:
            problems.add(key, f"at most {MAX_ENTITIES} entities")
            continue
        seen: set[str] = set()
        for i, entity in enumerate(entities):
            where = f"{key}[{i}]"
            if not isinstance(entity, dict):
                problems.add(where, "must be an object")
                continue
            name = entity.get(BY_KEY[key].name_field if key in BY_KEY else "name")
            field = f"{where}.{BY_KEY[key].name_field if key in BY_KEY else 'name'}"
            kind = BY_KEY.get(key)
            pattern = kind.name_pattern if kind else _NAME
            if key == "workflows" and not name:
                problems.add(field, "is required (the workflow's slug)")
            elif not isinstance(name, str) or not pattern.match(name) or \
                    (pattern is _NAME and is_uuid(name)):
                problems.add(field, kind.name_rule if kind else
                             "1-100 letters, digits, '.', '_' or '-', not a UUID")
                continue
            if name in seen:
                problems.add(field, f"{name!r} appears twice")
            seen.add(name)
            _check_entity(problems, key, where, entity)
    return problems


def _check_webhook(problems: Problems, where: str, entity: dict[str, Any]) -> None:
    from agentmesh.integration.v1 import integration_pb2
    body = {k: v for k, v in entity.items() if k != "secret"}
    secret = entity.get("secret")
    if secret not in (None, "", SECRET_PLACEHOLDER) and (not isinstance(secret, str)
                                                         or len(secret) < 16):
        problems.add(f"{where}.secret", f"at least 16 characters, or {SECRET_PLACEHOLDER!r} "
                     "for a new one")
    _parse(problems, where, body, integration_pb2.Webhook)


def _check_versions(problems: Problems, kind: Kind, where: str,
                    entity: dict[str, Any]) -> list:
    """The version numbers of a snapshot or policy kind's `versions` (optional: without them
    the entity is created as it is), each version checked as the resource."""
    versions = entity.get("versions")
    if versions is None:
        return []
    if not isinstance(versions, list) or not versions:
        problems.add(f"{where}.versions", "a list of at least one version, oldest first")
        return []
    numbers = []
    for j, version in enumerate(versions):
        if not isinstance(version, dict):
            problems.add(f"{where}.versions[{j}]", "must be an object")
            continue
        numbers.append(version.get("version"))
        data = {k: v for k, v in version.items() if k != "version"}
        if kind.versions == "policy":
            unknown = [k for k in data if k not in _POLICY_VERSION]
            if unknown:
                problems.add(f"{where}.versions[{j}].{str(unknown[0])[:100]}",
                             f"unknown field; a policy version has {', '.join(_POLICY_VERSION)}")
            data = {**{k: v for k, v in entity.items()
                       if k not in ("versions", "version_labels")},
                    **{k: v for k, v in data.items() if k in _POLICY_VERSION}}
        _parse(problems, f"{where}.versions[{j}]", data, kind.message)
    return numbers


def _check_labels(problems: Problems, where: str, labels: Any, numbers: list) -> None:
    if not isinstance(labels, dict):
        problems.add(where, "must be an object of label: version")
        return
    for label, number in labels.items():
        if number not in numbers:
            problems.add(f"{where}.{label}", f"version {number!r} is not in versions")


def _check_entity(problems: Problems, key: str, where: str, entity: dict[str, Any]) -> None:
    if key == "webhooks":
        _check_webhook(problems, where, entity)
        return
    if key == "api_connections":
        try:
            connections.check(entity)
        except errors.InvalidArgument as exc:
            for field, text in exc.field_violations or [("", exc.message)]:
                problems.add(f"{where}.{field}" if field else where, text)
        return
    kind = BY_KEY[key]
    if kind.versions in ("snapshot", "policy"):
        numbers = _check_versions(problems, kind, where, entity)
        labels = entity.get("version_labels")
        if labels is not None:
            _check_labels(problems, f"{where}.version_labels", labels, numbers)
        if key == "workflows":
            schedules = entity.get("schedules")
            if schedules is not None and not isinstance(schedules, list):
                problems.add(f"{where}.schedules", "must be a list")
            for j, schedule in enumerate(schedules or []):
                _parse(problems, f"{where}.schedules[{j}]", schedule,
                       type(kind.module.Schedule()))
        body = {k: v for k, v in entity.items()
                if k not in ("versions", "version_labels", "schedules")}
        _parse(problems, where, body, kind.message)
        return
    body = {k: v for k, v in entity.items() if k not in ("versions", "labels")}
    if key == "secrets":
        body.pop("value", None)
    if key == "budgets":
        body.pop("name", None)   # the budget's scope: output-only in the message
    if key in _VERSIONED:
        versions = entity.get("versions")
        if not isinstance(versions, list) or not versions:
            problems.add(f"{where}.versions", "at least one version")
            return
        numbers = []
        for j, version in enumerate(versions):
            if not isinstance(version, dict):
                problems.add(f"{where}.versions[{j}]", "must be an object")
                continue
            data = {k: v for k, v in version.items() if k != "version"}
            numbers.append(version.get("version"))
            _parse(problems, f"{where}.versions[{j}]", data,
                   getattr(kind.module, f"{kind.cls}Version"))
        labels = entity.get("labels") or {}
        if not isinstance(labels, dict):
            problems.add(f"{where}.labels", "must be an object of label: version")
        else:
            for label, number in labels.items():
                if number not in numbers:
                    problems.add(f"{where}.labels.{label}", f"version {number!r} is not in "
                                 "versions")
        last = versions[-1] if isinstance(versions[-1], dict) else {}
        body.update({k: last[k] for k in _VERSIONED[key] if k in last})
    _parse(problems, where, body, kind.message)


def check_against(problems: Problems, bundle: dict[str, Any],
                  existing: dict[str, set[str]]) -> None:
    """What depends on the target tenant: secrets to fill, references that resolve."""
    for i, secret in enumerate(bundle.get("secrets") or []):
        value = secret.get("value")
        if secret.get("name") in existing.get("secrets", set()):
            continue
        if not isinstance(value, str) or not value or value == SECRET_PLACEHOLDER:
            problems.add(f"secrets[{i}].value", "fill in the secret's value: the tenant has no "
                         "secret of this name and the bundle carries a placeholder")
    in_bundle = {key: {name_of(key, e) for e in bundle.get(key) or [] if isinstance(e, dict)}
                 for key in ALL_KEYS}
    for key in ("workflows",):
        for i, entity in enumerate(bundle.get(key) or []):
            for target, path, value in references(key, entity):
                if value in in_bundle.get(target, set()) or value in existing.get(target, set()):
                    continue
                problems.add(f"{key}[{i}].{path.replace('[]', '')}",
                             f"{BY_KEY[target].noun} {value!r} is neither in the bundle nor in "
                             "the tenant")


def mask(entity: dict[str, Any]) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=sorted(entity))
