"""TemplateService: templates with immutable versions and labels (store.TEMPLATE_VERSIONS),
previewed, instantiated (mesh.templates.instantiate), exported and imported."""

from __future__ import annotations

from typing import Any

from google.api import httpbody_pb2
from sqlmodel import Session

from agentmesh.common.v1 import common_pb2
from agentmesh.templates.v1 import templates_pb2 as pb
from agentmesh.templates.v1 import templates_pb2_grpc as pb_grpc
from mesh.runtime import audit, documents
from mesh.runtime.context import Caller, metadata_value, require_caller
from mesh.runtime.convert import changes, plain, python_value, values, writable
from mesh.runtime.errors import invalid_field
from mesh.runtime.paging import PageRequest
from mesh.runtime.repository import holds
from mesh.runtime.service import Runtime
from mesh.templates import instantiate, rendering, transfer, validation
from mesh.templates.models import TemplateRow
from mesh.templates.store import (TEMPLATE_VERSIONS, load, template_message, templates,
                                  version_message)

_WRITABLE = writable(pb.Template)
_SYNTAX = {pb.TEMPLATE_FORMAT_JSON: "json", pb.TEMPLATE_FORMAT_YAML: "yaml"}


def _create(session: Session, caller: Caller, fields: dict[str, Any], action: str) -> TemplateRow:
    row = templates.add(session, TemplateRow(tenant_id=caller.tenant_id,
                                             created_by=caller.user_id, version=1, **fields))
    TEMPLATE_VERSIONS.first(session, row, created_by=caller.user_id, content=row.content,
                            parameters=row.parameters)
    audit.record(session, caller, action, "template", row.id, name=row.name)
    return row


class TemplateService(pb_grpc.TemplateServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.db = runtime.database
        self.peers = runtime.peers

    async def ListTemplates(self, request, context):
        caller = require_caller(context)
        page = PageRequest.of(request)
        where = (holds(TemplateRow.tags, request.tag),) if request.tag else ()
        filters = {"kind": pb.TemplateKind.Name(request.kind) if request.kind else None,
                   "category": request.category}
        result = await self.db.read(lambda s: templates.list(
            s, caller.tenant_id, page, filters=filters, search=request.search, where=where))
        return pb.ListTemplatesResponse(**result.fields(template_message))

    async def CreateTemplate(self, request, context):
        caller = require_caller(context)
        fields = validation.check_template(values(request.template, _WRITABLE))
        row = await self.db.write(lambda s: _create(s, caller, fields, "create"))
        return template_message(row)

    async def GetTemplate(self, request, context):
        caller = require_caller(context)
        row = await self.db.read(lambda s: templates.get(s, caller.tenant_id,
                                                         request.template_id))
        return template_message(row)

    async def UpdateTemplate(self, request, context):
        caller = require_caller(context)
        update = changes(request.template, _WRITABLE, list(request.update_mask.paths))
        if "name" in update:
            validation.check_name(update["name"])
        if "kind" in update:
            update["kind"] = validation.check_kind(update["kind"])
        if "tags" in update:
            validation.check_tags(update["tags"])

        def apply(session: Session) -> TemplateRow:
            row = templates.get(session, caller.tenant_id, request.template_id, lock=True)
            content = plain(update.pop("content")) if "content" in update else row.content
            parameters = validation.parameters(update.pop("parameters")) \
                if "parameters" in update else row.parameters
            if content != row.content or parameters != row.parameters:
                validation.check_content(content, parameters)
                TEMPLATE_VERSIONS.add(session, row, created_by=caller.user_id, content=content,
                                      parameters=parameters)
            for key, value in update.items():
                setattr(row, key, value)
            audit.record(session, caller, "update", "template", row.id, version=row.version)
            return templates.save(session, row)

        return template_message(await self.db.write(apply))

    async def DeleteTemplate(self, request, context):
        caller = require_caller(context)

        name = await self.db.write(lambda s: TEMPLATE_VERSIONS.delete_resource(s, caller, request.template_id))
        return common_pb2.DeleteResponse(success=True, message=f"template {name!r} deleted")

    async def PreviewTemplate(self, request, context):
        caller = require_caller(context)
        given: Any = {}
        if request.parameters:
            given = documents.parse(request.parameters, "parameters", syntax="json")
            if not isinstance(given, dict):
                raise invalid_field("parameters", "must be a JSON object")
        row, version = await self.db.read(lambda s: load(
            s, caller.tenant_id, request.template_id, request.version, request.label))
        values_, missing = rendering.values(version.parameters, given)
        result = await rendering.render(version.content, values_, keep_missing=True,
                                        tenant_id=caller.tenant_id)
        out = pb.PreviewTemplateResponse(template_id=row.id, version=version.version,
                                         resource_kind=row.kind, missing_parameters=missing)
        out.result.update(result)
        return out

    async def InstantiateTemplate(self, request, context):
        caller = require_caller(context)
        given = python_value(request, request.DESCRIPTOR.fields_by_name["parameters"]) or {}
        row, version = await self.db.read(lambda s: load(
            s, caller.tenant_id, request.template_id, request.version, request.label))
        values_, missing = rendering.values(version.parameters, given)
        rendering.require(missing)
        result = await rendering.render(version.content, values_, keep_missing=False,
                                        tenant_id=caller.tenant_id)
        out = pb.InstantiateTemplateResponse(template_id=row.id, version=version.version,
                                             resource_kind=row.kind)
        out.result.update(result)
        if request.create:
            out.resource_id = await instantiate.create(self.peers, caller, row.kind, result)
            await self.db.write(lambda s: audit.record(
                s, caller, "instantiate", "template", row.id, version=version.version,
                created_kind=row.kind, created_id=out.resource_id))
        return out

    async def ListTemplateVersions(self, request, context):
        caller = require_caller(context)
        page = PageRequest.of(request)
        row, result = await self.db.read(lambda s: TEMPLATE_VERSIONS.page(
            s, caller.tenant_id, request.template_id, page))
        return pb.ListTemplateVersionsResponse(**result.fields(lambda v: version_message(v, row)))

    async def CreateTemplateVersion(self, request, context):
        caller = require_caller(context)
        body = request.template_version
        content = plain(python_value(body, body.DESCRIPTOR.fields_by_name["content"]))
        raw = python_value(body, body.DESCRIPTOR.fields_by_name["parameters"])

        def create(session: Session) -> pb.TemplateVersion:
            row = templates.get(session, caller.tenant_id, request.template_id, lock=True)
            parameters = validation.parameters(raw, "template_version.parameters") if raw \
                else row.parameters
            validation.check_content(content, parameters, "template_version.content")
            version = TEMPLATE_VERSIONS.add(session, row, created_by=caller.user_id,
                                            content=content, parameters=parameters,
                                            changelog=body.changelog)
            templates.save(session, row)
            audit.record(session, caller, "create", "template_version", row.id,
                         version=version.version)
            return version_message(version, row)

        return await self.db.write(create)

    async def SetTemplateLabel(self, request, context):
        caller = require_caller(context)
        return template_message(await self.db.write(lambda s: TEMPLATE_VERSIONS.move_label(
            s, caller, request.template_id, request.label, request.version)))

    async def DeleteTemplateLabel(self, request, context):
        caller = require_caller(context)
        row = await self.db.write(lambda s: TEMPLATE_VERSIONS.drop_label(
            s, caller, request.template_id, request.label))
        return common_pb2.DeleteResponse(
            success=True, message=f"label {request.label!r} removed from template {row.name!r}")

    async def ImportTemplate(self, request, context):
        caller = require_caller(context)
        syntax = "json" if request.format == pb.TEMPLATE_FORMAT_JSON else "yaml"
        fields = validation.check_template(transfer.imported(request.content, syntax,
                                                             request.name))
        row = await self.db.write(lambda s: _create(s, caller, fields, "import"))
        return template_message(row)

    async def ExportTemplate(self, request, context):
        caller = require_caller(context)
        row, version = await self.db.read(lambda s: load(
            s, caller.tenant_id, request.template_id, request.version, request.label))
        syntax = documents.syntax_for(_SYNTAX.get(request.format, ""),
                                      metadata_value(context, "accept"))
        content_type, data = documents.dump(transfer.export(row, version), syntax)
        return httpbody_pb2.HttpBody(content_type=content_type, data=data)
