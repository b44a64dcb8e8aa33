"""The templates service: reusable, versioned bodies of agents, workflows and tools with declared
parameters (JSON Schema types, checked with `jsonschema`), rendered safely
(mesh.runtime.placeholders: plain `{{ name }}` placeholders, Jinja2's sandbox), instantiated
through the owning service over gRPC as the caller, exported and imported as YAML or JSON."""

from __future__ import annotations

import json
import re
from typing import Any

import grpc
import sqlalchemy as sa
import yaml
from google.api import httpbody_pb2
from google.protobuf import json_format
from sqlmodel import Session, select

from agentmesh.agents.v1 import agents_pb2, agents_pb2_grpc
from agentmesh.common.v1 import common_pb2
from agentmesh.templates.v1 import templates_pb2 as pb
from agentmesh.templates.v1 import templates_pb2_grpc as pb_grpc
from agentmesh.tools.v1 import tools_pb2, tools_pb2_grpc
from agentmesh.workflows.v1 import workflows_pb2, workflows_pb2_grpc
from mesh.runtime import audit, documents, errors, labels, placeholders
from mesh.runtime.context import Caller, metadata_value, require_caller
from mesh.runtime.convert import changes, python_value, to_message, values, writable
from mesh.runtime.errors import InvalidArgument, NotFound, invalid_field
from mesh.runtime.paging import PageRequest
from mesh.runtime.repository import TenantRepository
from mesh.runtime.service import Runtime, ServiceDefinition
from mesh.runtime.tables import is_uuid
from mesh.templates.models import TemplateRow, TemplateVersionRow
from mesh.templates.rules import DEFAULT_TYPE, PARAMETER_TYPES, is_of_type

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_PARAM = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_TEMPLATE = writable(pb.Template)
_MAX_DOCUMENT = 1024 * 1024
_DOCUMENT_KEYS = ("name", "description", "kind", "category", "tags", "content", "parameters",
                  "version")
_PARAMETER_KEYS = ("name", "description", "type", "required", "default_value")

templates = TenantRepository(TemplateRow, noun="template", search_columns=("name", "description"),
                             order_columns=("name", "kind", "category"), quota="resource")
versions = TenantRepository(TemplateVersionRow, noun="template_version", name_column=None,
                            order_columns=("version",), default_order="-version", quota="version")

# kind -> (owning service, stub, create method, its request class, request field, message class)
_TARGETS: dict[str, tuple[str, type, str, type, str, type]] = {
    "TEMPLATE_KIND_AGENT": ("agents", agents_pb2_grpc.AgentServiceStub, "CreateAgent",
                            agents_pb2.CreateAgentRequest, "agent", agents_pb2.Agent),
    "TEMPLATE_KIND_WORKFLOW": ("workflows", workflows_pb2_grpc.WorkflowServiceStub,
                               "CreateWorkflow", workflows_pb2.CreateWorkflowRequest, "workflow",
                               workflows_pb2.Workflow),
    "TEMPLATE_KIND_TOOL": ("tools", tools_pb2_grpc.ToolServiceStub, "CreateTool",
                           tools_pb2.CreateToolRequest, "tool", tools_pb2.Tool),
}
_ERRORS = {c.code: c for c in (errors.InvalidArgument, errors.NotFound, errors.AlreadyExists,
                               errors.FailedPrecondition, errors.Unauthenticated,
                               errors.PermissionDenied, errors.Unimplemented, errors.Unavailable)}


def _tag_clause(tag: str):
    pattern = "%" + json.dumps(tag).replace("\\", "\\\\").replace("%", "\\%") \
        .replace("_", "\\_") + "%"
    return sa.cast(TemplateRow.tags, sa.Text).like(pattern, escape="\\")


def _plain(value: Any) -> Any:
    """JSON from a Struct with integral numbers as integers (Struct numbers are all floats)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# ---- validation ----------------------------------------------------------------------------
def _check_name(name: Any, field: str = "name") -> None:
    if not name:
        raise invalid_field(field, "is required")
    if not isinstance(name, str) or not _NAME.match(name) or is_uuid(name):
        raise invalid_field(field, "1-100 letters, digits, '.', '_' or '-', starting with a "
                            "letter or digit, and not a UUID")
    if name == "import":
        raise invalid_field(field, "'import' is reserved (it is a path of the API)")


def _check_kind(kind: Any) -> str:
    if isinstance(kind, str) and kind.upper() in ("AGENT", "WORKFLOW", "TOOL"):
        kind = f"TEMPLATE_KIND_{kind.upper()}"
    if kind not in _TARGETS:
        raise invalid_field("kind", "one of TEMPLATE_KIND_AGENT, TEMPLATE_KIND_WORKFLOW, "
                            "TEMPLATE_KIND_TOOL")
    return kind


def _type_problem(kind: str, value: Any) -> str | None:
    if is_of_type(kind, value):
        return None
    return f"{json.dumps(value)[:80]} is not of type {kind}"


def _parameters(raw: list[Any], field: str = "parameters") -> list[dict[str, Any]]:
    out, seen = [], set()
    for i, param in enumerate(raw):
        where = f"{field}[{i}]"
        if not isinstance(param, dict):
            raise invalid_field(where, "must be an object")
        unknown = [k for k in param if k not in _PARAMETER_KEYS]
        if unknown:
            raise invalid_field(f"{where}.{unknown[0]}", "unknown field")
        name = param.get("name")
        if not isinstance(name, str) or not _PARAM.match(name):
            raise invalid_field(f"{where}.name", "letters, digits and _, not starting with a digit")
        if name in seen:
            raise invalid_field(f"{where}.name", f"{name!r} is declared twice")
        seen.add(name)
        kind = param.get("type") or DEFAULT_TYPE
        if kind not in PARAMETER_TYPES:
            raise invalid_field(f"{where}.type", f"one of {', '.join(PARAMETER_TYPES)}")
        description = param.get("description") or ""
        if not isinstance(description, str):
            raise invalid_field(f"{where}.description", "must be a string")
        required = param.get("required", False)
        if not isinstance(required, bool):
            raise invalid_field(f"{where}.required", "must be true or false")
        entry: dict[str, Any] = {"name": name, "description": description, "type": kind,
                                 "required": required}
        if param.get("default_value") is not None:
            default = _plain(param["default_value"])
            problem = _type_problem(kind, default)
            if problem:
                raise invalid_field(f"{where}.default_value", problem)
            entry["default_value"] = default
        out.append(entry)
    return out


def _strings(node: Any, path: str):
    """(path, text) of every string value in `node` (object keys are not rendered)."""
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _strings(value, f"{path}[{i}]")


def _check_content(content: Any, parameters: list[dict[str, Any]], field: str = "content") -> None:
    if not isinstance(content, dict) or not content:
        raise invalid_field(field, "is required: the body of the resource, an object")
    declared = {p["name"] for p in parameters}
    try:  # counted before any text is parsed
        placeholders.check_count(sum(placeholders.count(t) for _, t in _strings(content, field)))
    except placeholders.TooManyPlaceholders as exc:
        raise placeholders.refusal(exc, "", field) from None
    for path, text in _strings(content, field):
        try:
            used = placeholders.check(text)
        except placeholders.PlaceholderError as exc:
            raise InvalidArgument(f"{path}: {exc}", reason="UNSAFE_TEMPLATE_EXPRESSION",
                                  field_violations=[(path, str(exc))]) from None
        undeclared = [n for n in used if n not in declared]
        if undeclared:
            raise invalid_field(path, f"placeholder(s) {', '.join(undeclared)} not declared in "
                                "parameters")


def _check_tags(tags: Any) -> list[str]:
    if not isinstance(tags, list):
        raise invalid_field("tags", "must be a list of strings")
    for i, tag in enumerate(tags):
        if not isinstance(tag, str) or not tag or len(tag) > 64:
            raise invalid_field(f"tags[{i}]", "1-64 characters")
    return tags


def _check_template(fields: dict[str, Any]) -> dict[str, Any]:
    """A full template's fields, checked and normalised (create and import)."""
    _check_name(fields.get("name"))
    fields["kind"] = _check_kind(fields.get("kind"))
    for key in ("description", "category"):
        if not isinstance(fields.get(key) or "", str):
            raise invalid_field(key, "must be a string")
        fields[key] = fields.get(key) or ""
    fields["tags"] = _check_tags(fields.get("tags") or [])
    fields["parameters"] = _parameters(fields.get("parameters") or [])
    fields["content"] = _plain(fields.get("content"))
    _check_content(fields["content"], fields["parameters"])
    return fields


# ---- rendering -----------------------------------------------------------------------------
def _values(parameters: list[dict[str, Any]], given: dict[str, Any]) -> tuple[dict, list[str]]:
    declared = {p["name"]: p for p in parameters}
    unknown = sorted(k for k in given if k not in declared)
    if unknown:
        raise InvalidArgument(f"unknown parameter(s) {', '.join(unknown)}",
                              reason="UNKNOWN_TEMPLATE_PARAMETER",
                              field_violations=[(f"parameters.{k}", "unknown parameter")
                                                for k in unknown])
    out, missing, wrong = {}, [], []
    for name, param in declared.items():
        if name in given:
            value = _plain(given[name])
            problem = _type_problem(param["type"], value)
            if problem:
                wrong.append((f"parameters.{name}", problem))
            out[name] = value
        elif "default_value" in param:
            out[name] = param["default_value"]
        elif param["required"]:
            missing.append(name)
        else:
            out[name] = "" if param["type"] == "string" else None
    if wrong:
        raise InvalidArgument("parameter(s) of the wrong type: " + "; ".join(
            f"{f}: {p}" for f, p in wrong), reason="TEMPLATE_PARAMETER_TYPE",
            field_violations=wrong)
    return out, missing


async def _render(node: Any, values_: dict[str, Any], keep_missing: bool, tenant: str) -> Any:
    """The content rendered: its size bounded before anything is built (400
    RENDERED_TOO_LARGE), large renderings in the sandbox (mesh.runtime.placeholders)."""
    try:
        return await placeholders.render_tree_async(node, values_, keep_missing=keep_missing,
                                                    tenant=tenant)
    except placeholders.PlaceholderError as exc:
        raise placeholders.refusal(exc, "TEMPLATE_RENDER_FAILED", "parameters") from None


# ---- messages ------------------------------------------------------------------------------
def _parameter_messages(parameters: list[dict[str, Any]]) -> list[pb.TemplateParameter]:
    return [json_format.ParseDict(p, pb.TemplateParameter()) for p in parameters]


def _template_message(row: TemplateRow) -> pb.Template:
    return to_message(row, pb.Template, parameters=_parameter_messages(row.parameters))


def _version_message(version: TemplateVersionRow, row: TemplateRow) -> pb.TemplateVersion:
    return to_message(version, pb.TemplateVersion,
                      parameters=_parameter_messages(version.parameters),
                      labels=sorted(k for k, v in row.labels.items() if v == version.version))


def _version(session: Session, row: TemplateRow, number: int,
             label: str = "") -> TemplateVersionRow:
    if label:
        # With a version too, that version, if the label points at it.
        if label not in row.labels or (number and row.labels[label] != number):
            at = f" at version {number}" if number else ""
            raise NotFound(f"template {row.name!r} has no label {label!r}{at}",
                           reason="TEMPLATE_LABEL_NOT_FOUND", details={"label": label})
        number = row.labels[label]
    number = number or row.version
    found = session.exec(select(TemplateVersionRow).where(
        TemplateVersionRow.tenant_id == row.tenant_id, TemplateVersionRow.template_id == row.id,
        TemplateVersionRow.version == number)).first()
    if found is None:
        raise NotFound(f"template {row.name!r} has no version {number}",
                       reason="TEMPLATE_VERSION_NOT_FOUND", details={"version": number})
    return found


def _peer_error(error: grpc.aio.AioRpcError, service: str) -> errors.DomainError:
    """The owning service's error, passed through with its reason and field violations."""
    if error.code() == grpc.StatusCode.UNIMPLEMENTED:
        return errors.Unimplemented(
            f"the {service} service cannot create resources yet; instantiate without create "
            "to get the rendered body", reason="TARGET_SERVICE_NOT_BUILT",
            details={"service": service})
    envelope: dict[str, Any] = {}
    for key, value in error.trailing_metadata() or ():
        if key == errors.ERROR_TRAILER:
            envelope = json.loads(value)
    details = dict(envelope.get("details") or {})
    violations = [(v["field"], v["description"]) for v in details.pop("field_violations", [])]
    reason = details.pop("reason", "")
    cls = _ERRORS.get(error.code(), errors.Unavailable)
    return cls(envelope.get("message") or error.details() or f"{service} failed",
               reason=reason or "", details=details, field_violations=violations)


class TemplateService(pb_grpc.TemplateServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.db = runtime.database
        self.peers = runtime.peers

    async def ListTemplates(self, request, context):
        caller = require_caller(context)
        page = PageRequest.of(request)
        where = (_tag_clause(request.tag),) if request.tag else ()
        filters = {"kind": pb.TemplateKind.Name(request.kind) if request.kind else None,
                   "category": request.category}
        result = await self.db.read(lambda s: templates.list(
            s, caller.tenant_id, page, filters=filters, search=request.search, where=where))
        return pb.ListTemplatesResponse(**result.fields(_template_message))

    def _create(self, session: Session, caller: Caller, fields: dict[str, Any],
                action: str) -> TemplateRow:
        row = templates.add(session, TemplateRow(tenant_id=caller.tenant_id,
                                                 created_by=caller.user_id, version=1, **fields))
        versions.add(session, TemplateVersionRow(
            tenant_id=caller.tenant_id, template_id=row.id, version=1, content=row.content,
            parameters=row.parameters, created_by=caller.user_id))
        audit.record(session, caller, action, "template", row.id, name=row.name)
        return row

    async def CreateTemplate(self, request, context):
        caller = require_caller(context)
        fields = _check_template(values(request.template, _TEMPLATE))
        row = await self.db.write(lambda s: self._create(s, caller, fields, "create"))
        return _template_message(row)

    async def GetTemplate(self, request, context):
        caller = require_caller(context)
        row = await self.db.read(lambda s: templates.get(s, caller.tenant_id,
                                                         request.template_id))
        return _template_message(row)

    def _new_version(self, session: Session, caller: Caller, row: TemplateRow,
                     content: dict[str, Any], parameters: list[dict[str, Any]],
                     changelog: str = "") -> TemplateVersionRow:
        version = versions.add(session, TemplateVersionRow(
            tenant_id=row.tenant_id, template_id=row.id, version=row.version + 1,
            content=content, parameters=parameters, changelog=changelog,
            created_by=caller.user_id))
        row.version, row.content, row.parameters = version.version, content, parameters
        return version

    async def UpdateTemplate(self, request, context):
        caller = require_caller(context)
        update = changes(request.template, _TEMPLATE, list(request.update_mask.paths))
        if "name" in update:
            _check_name(update["name"])
        if "kind" in update:
            update["kind"] = _check_kind(update["kind"])
        if "tags" in update:
            _check_tags(update["tags"])

        def apply(session: Session) -> TemplateRow:
            row = templates.get(session, caller.tenant_id, request.template_id, lock=True)
            content = _plain(update.pop("content")) if "content" in update else row.content
            parameters = _parameters(update.pop("parameters")) if "parameters" in update \
                else row.parameters
            if content != row.content or parameters != row.parameters:
                _check_content(content, parameters)
                self._new_version(session, caller, row, content, parameters)
            for key, value in update.items():
                setattr(row, key, value)
            audit.record(session, caller, "update", "template", row.id, version=row.version)
            return templates.save(session, row)

        return _template_message(await self.db.write(apply))

    async def DeleteTemplate(self, request, context):
        caller = require_caller(context)

        def remove(session: Session) -> str:
            row = templates.get(session, caller.tenant_id, request.template_id, lock=True)
            for version in session.exec(select(TemplateVersionRow).where(
                    TemplateVersionRow.tenant_id == row.tenant_id,
                    TemplateVersionRow.template_id == row.id)).all():
                versions.delete(session, version)
            return templates.remove(session, row, caller)

        name = await self.db.write(remove)
        return common_pb2.DeleteResponse(success=True, message=f"template {name!r} deleted")

    async def _load(self, caller: Caller, key: str, number: int,
                    label: str = "") -> tuple[TemplateRow, TemplateVersionRow]:
        def load(session: Session):
            row = templates.get(session, caller.tenant_id, key)
            return row, _version(session, row, number, label)
        return await self.db.read(load)

    async def PreviewTemplate(self, request, context):
        caller = require_caller(context)
        given: Any = {}
        if request.parameters:
            given = documents.parse(request.parameters, "parameters", syntax="json")
            if not isinstance(given, dict):
                raise invalid_field("parameters", "must be a JSON object")
        row, version = await self._load(caller, request.template_id, request.version,
                                        request.label)
        values_, missing = _values(version.parameters, given)
        result = await _render(version.content, values_, True, caller.tenant_id)
        out = pb.PreviewTemplateResponse(template_id=row.id, version=version.version,
                                         resource_kind=row.kind, missing_parameters=missing)
        out.result.update(result)
        return out

    async def InstantiateTemplate(self, request, context):
        caller = require_caller(context)
        given = python_value(request, request.DESCRIPTOR.fields_by_name["parameters"]) or {}
        row, version = await self._load(caller, request.template_id, request.version,
                                        request.label)
        values_, missing = _values(version.parameters, given)
        if missing:
            raise InvalidArgument(f"missing required parameter(s) {', '.join(missing)}",
                                  reason="TEMPLATE_PARAMETERS_MISSING",
                                  details={"missing": ",".join(missing)},
                                  field_violations=[(f"parameters.{n}", "is required")
                                                    for n in missing])
        result = await _render(version.content, values_, False, caller.tenant_id)
        out = pb.InstantiateTemplateResponse(template_id=row.id, version=version.version,
                                             resource_kind=row.kind)
        out.result.update(result)
        if request.create:
            out.resource_id = await self._create_resource(caller, row, version.version, result)
        return out

    async def _create_resource(self, caller: Caller, row: TemplateRow, number: int,
                               body: dict[str, Any]) -> str:
        service, stub_class, method, request_class, field, message_class = _TARGETS[row.kind]
        scope = f"{service}:write"
        if not caller.has_scope(scope):
            raise errors.PermissionDenied(f"creating from this template needs scope {scope}",
                                          reason="MISSING_SCOPE",
                                          details={"required_scope": scope})
        try:
            message = json_format.ParseDict(body, message_class())
        except json_format.ParseError as exc:
            raise InvalidArgument(f"the rendered body is not a valid {field}: {exc}",
                                  reason="RENDERED_BODY_INVALID",
                                  field_violations=[("content", str(exc))]) from None
        stub = self.peers.stub(stub_class)
        try:
            created = await getattr(stub, method)(request_class(**{field: message}))
        except grpc.aio.AioRpcError as exc:
            raise _peer_error(exc, service) from None

        def record(session: Session) -> None:
            audit.record(session, caller, "instantiate", "template", row.id, version=number,
                         created_kind=row.kind, created_id=created.id)

        await self.db.write(record)
        return created.id

    async def ListTemplateVersions(self, request, context):
        caller = require_caller(context)
        page = PageRequest.of(request)

        def run(session: Session) -> dict[str, Any]:
            row = templates.get(session, caller.tenant_id, request.template_id)
            return versions.list(session, caller.tenant_id, page, filters={
                "template_id": row.id}).fields(lambda v: _version_message(v, row))

        return pb.ListTemplateVersionsResponse(**await self.db.read(run))

    async def CreateTemplateVersion(self, request, context):
        caller = require_caller(context)
        body = request.template_version
        content = _plain(python_value(body, body.DESCRIPTOR.fields_by_name["content"]))
        raw = python_value(body, body.DESCRIPTOR.fields_by_name["parameters"])

        def create(session: Session) -> pb.TemplateVersion:
            row = templates.get(session, caller.tenant_id, request.template_id, lock=True)
            parameters = _parameters(raw, "template_version.parameters") if raw \
                else row.parameters
            _check_content(content, parameters, "template_version.content")
            version = self._new_version(session, caller, row, content, parameters,
                                        body.changelog)
            templates.save(session, row)
            audit.record(session, caller, "create", "template_version", row.id,
                         version=version.version)
            return _version_message(version, row)

        return await self.db.write(create)

    async def SetTemplateLabel(self, request, context):
        caller = require_caller(context)
        labels.check(request.label, request.version)

        def apply(session: Session) -> TemplateRow:
            row = templates.get(session, caller.tenant_id, request.template_id, lock=True)
            _version(session, row, request.version)
            previous = labels.point(row, request.label, request.version)
            audit.record(session, caller, "label", "template", row.id, label=request.label,
                         version=request.version, previous=previous)
            return templates.save(session, row)

        return _template_message(await self.db.write(apply))

    async def DeleteTemplateLabel(self, request, context):
        caller = require_caller(context)

        def remove(session: Session) -> str:
            row = templates.get(session, caller.tenant_id, request.template_id, lock=True)
            labels.remove(row, request.label, "template")
            templates.save(session, row)
            audit.record(session, caller, "unlabel", "template", row.id, label=request.label)
            return row.name

        name = await self.db.write(remove)
        return common_pb2.DeleteResponse(
            success=True, message=f"label {request.label!r} removed from template {name!r}")

    async def ImportTemplate(self, request, context):
        caller = require_caller(context)
        if not request.content:
            raise invalid_field("content", "is required: a document as export answers it")
        syntax = "json" if request.format == pb.TEMPLATE_FORMAT_JSON else "yaml"
        document = documents.parse(request.content, "content", syntax=syntax,
                                   max_bytes=_MAX_DOCUMENT)
        if not isinstance(document, dict):
            raise invalid_field("content", "must be a mapping of template fields")
        unknown = [k for k in document if k not in _DOCUMENT_KEYS]
        if unknown:
            raise invalid_field(str(unknown[0]), f"unknown field; known: {', '.join(_DOCUMENT_KEYS)}")
        fields = {k: v for k, v in document.items() if k != "version"}
        if request.name:
            fields["name"] = request.name
        fields = _check_template(fields)
        row = await self.db.write(lambda s: self._create(s, caller, fields, "import"))
        return _template_message(row)

    async def ExportTemplate(self, request, context):
        caller = require_caller(context)
        row, version = await self._load(caller, request.template_id, request.version,
                                        request.label)
        document = {"name": row.name, "description": row.description, "kind": row.kind,
                    "category": row.category, "tags": list(row.tags),
                    "content": version.content, "parameters": version.parameters,
                    "version": version.version}
        wanted = request.format
        if wanted == pb.TEMPLATE_FORMAT_UNSPECIFIED and \
                "yaml" in metadata_value(context, "accept").lower():
            wanted = pb.TEMPLATE_FORMAT_YAML
        if wanted == pb.TEMPLATE_FORMAT_YAML:
            text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
            return httpbody_pb2.HttpBody(content_type="application/yaml", data=text.encode())
        text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
        return httpbody_pb2.HttpBody(content_type="application/json", data=text.encode())


DEFINITION = ServiceDefinition("templates", servicers=[TemplateService],
                               tables=[TemplateRow, TemplateVersionRow])
