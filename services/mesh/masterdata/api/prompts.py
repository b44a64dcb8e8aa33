"""PromptService: prompts with immutable versions and labels (store.PROMPT_VERSIONS), served
and rendered at a version or a label."""

from __future__ import annotations

from sqlmodel import Session

from agentmesh.common.v1 import common_pb2
from agentmesh.masterdata.v1 import masterdata_pb2 as pb
from agentmesh.masterdata.v1 import masterdata_pb2_grpc as pb_grpc
from mesh.masterdata import prompts as domain
from mesh.masterdata.checks import check_name, check_tags
from mesh.masterdata.models import PromptRow, PromptVersionRow
from mesh.masterdata.store import (PROMPT_VERSIONS, facets, list_fields, prompt_message,
                                   prompt_version_message, prompts)
from mesh.runtime import audit
from mesh.runtime.context import require_caller
from mesh.runtime.convert import changes, values, writable
from mesh.runtime.paging import PageRequest
from mesh.runtime.repository import holds
from mesh.runtime.service import Runtime

_WRITABLE = writable(pb.Prompt)
_VARIABLE = writable(pb.PromptVariable)


class PromptService(pb_grpc.PromptServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.db = runtime.database

    async def ListPrompts(self, request, context):
        caller = require_caller(context)
        where = (holds(PromptRow.tags, request.tag),) if request.tag else ()
        return pb.ListPromptsResponse(**await list_fields(
            self.db, prompts, caller.tenant_id, PageRequest.of(request), prompt_message,
            filters={"category": request.category}, search=request.search, where=where))

    async def CreatePrompt(self, request, context):
        caller = require_caller(context)
        fields = values(request.prompt, _WRITABLE)
        check_name(fields["name"], domain.RESERVED)
        check_tags(fields["tags"])
        fields["variables"] = domain.variables(fields["content"], fields["variables"])

        def create(session: Session) -> PromptRow:
            row = prompts.add(session, PromptRow(tenant_id=caller.tenant_id,
                                                 created_by=caller.user_id, version=1, **fields))
            PROMPT_VERSIONS.first(session, row, created_by=caller.user_id, content=row.content,
                                  variables=row.variables)
            audit.record(session, caller, "create", "prompt", row.id, name=row.name, version=1)
            return row

        return prompt_message(await self.db.write(create))

    async def GetPrompt(self, request, context):
        caller = require_caller(context)
        if not request.label and not request.version:
            return await prompts.fetch(self.db, caller.tenant_id, request.prompt_id)

        def get(session: Session) -> pb.Prompt:
            row = prompts.get(session, caller.tenant_id, request.prompt_id)
            return prompt_message(row, PROMPT_VERSIONS.resolve(session, row, request.version,
                                                               request.label))

        return await self.db.read(get)

    async def UpdatePrompt(self, request, context):
        caller = require_caller(context)
        update = changes(request.prompt, _WRITABLE, list(request.update_mask.paths))
        if "name" in update:
            check_name(update["name"], domain.RESERVED)
        check_tags(update.get("tags") or [])

        def apply(session: Session) -> PromptRow:
            row = prompts.get(session, caller.tenant_id, request.prompt_id, lock=True)
            content = update.pop("content", row.content)
            declared = update.pop("variables", None)
            for key, value in update.items():
                setattr(row, key, value)
            if content != row.content or declared is not None:
                variables = domain.variables(content, declared, row.variables)
                if content != row.content or variables != row.variables:
                    PROMPT_VERSIONS.add(session, row, created_by=caller.user_id,
                                        content=content, variables=variables)
            audit.record(session, caller, "update", "prompt", row.id, version=row.version)
            return prompts.save(session, row)

        return prompt_message(await self.db.write(apply))

    async def DeletePrompt(self, request, context):
        caller = require_caller(context)

        name = await self.db.write(lambda s: PROMPT_VERSIONS.delete_resource(s, caller, request.prompt_id))
        return common_pb2.DeleteResponse(success=True, message=f"prompt {name!r} deleted")

    async def ListPromptCategories(self, request, context):
        caller = require_caller(context)
        result = await self.db.read(facets(PromptRow, "category", caller.tenant_id,
                                           PageRequest.of(request)))
        return pb.ListPromptCategoriesResponse(**result.fields(
            lambda item: pb.FacetCount(name=item[0], count=item[1])))

    async def ListPromptVersions(self, request, context):
        caller = require_caller(context)
        page = PageRequest.of(request)
        row, result = await self.db.read(lambda s: PROMPT_VERSIONS.page(
            s, caller.tenant_id, request.prompt_id, page))
        return pb.ListPromptVersionsResponse(**result.fields(
            lambda v: prompt_version_message(v, row)))

    async def CreatePromptVersion(self, request, context):
        caller = require_caller(context)
        body = request.prompt_version
        declared = [values(v, _VARIABLE) for v in body.variables] or None

        def create(session: Session) -> pb.PromptVersion:
            row = prompts.get(session, caller.tenant_id, request.prompt_id, lock=True)
            variables = domain.variables(body.content, declared, row.variables,
                                         field="prompt_version.variables")
            version = PROMPT_VERSIONS.add(session, row, created_by=caller.user_id,
                                          content=body.content, variables=variables,
                                          changelog=body.changelog)
            prompts.save(session, row)
            audit.record(session, caller, "create", "prompt_version", row.id,
                         version=version.version)
            return prompt_version_message(version, row)

        return await self.db.write(create)

    async def GetPromptVersion(self, request, context):
        caller = require_caller(context)

        def get(session: Session) -> pb.PromptVersion:
            row = prompts.get(session, caller.tenant_id, request.prompt_id)
            return prompt_version_message(PROMPT_VERSIONS.get(session, row, request.version), row)

        return await self.db.read(get)

    async def DeletePromptVersion(self, request, context):
        """Kept in the contract for older clients; it only refuses (versions are immutable)."""
        caller = require_caller(context)

        def refuse(session: Session) -> None:
            row = prompts.get(session, caller.tenant_id, request.prompt_id)
            PROMPT_VERSIONS.refuse_delete(session, row, request.version)

        await self.db.read(refuse)

    async def SetPromptLabel(self, request, context):
        caller = require_caller(context)
        return prompt_message(await self.db.write(lambda s: PROMPT_VERSIONS.move_label(
            s, caller, request.prompt_id, request.label, request.version)))

    async def DeletePromptLabel(self, request, context):
        caller = require_caller(context)
        row = await self.db.write(lambda s: PROMPT_VERSIONS.drop_label(
            s, caller, request.prompt_id, request.label))
        return common_pb2.DeleteResponse(
            success=True, message=f"label {request.label!r} removed from prompt {row.name!r}")

    async def RenderPrompt(self, request, context):
        caller = require_caller(context)

        def get(session: Session) -> tuple[PromptRow, PromptVersionRow]:
            row = prompts.get(session, caller.tenant_id, request.prompt_id)
            return row, PROMPT_VERSIONS.resolve(session, row, request.version, request.label)

        row, version = await self.db.read(get)
        text = await domain.render(row.name, version.content, version.variables,
                                   dict(request.variables), caller.tenant_id)
        return pb.RenderPromptResponse(prompt_id=row.id, version=version.version, content=text)
