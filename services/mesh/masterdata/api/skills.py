"""SkillService: skills, their categories and the ranked search."""

from __future__ import annotations

from sqlmodel import Session

from agentmesh.common.v1 import common_pb2
from agentmesh.masterdata.v1 import masterdata_pb2 as pb
from agentmesh.masterdata.v1 import masterdata_pb2_grpc as pb_grpc
from mesh.masterdata import skills as domain
from mesh.masterdata.models import SkillRow
from mesh.masterdata.store import facets, list_fields, skills
from mesh.runtime import audit
from mesh.runtime.context import require_caller
from mesh.runtime.convert import changes, plain, to_message, values, writable
from mesh.runtime.errors import invalid_field
from mesh.runtime.paging import PageRequest
from mesh.runtime.repository import holds
from mesh.runtime.service import Runtime

_WRITABLE = writable(pb.Skill)


def _message(row: SkillRow) -> pb.Skill:
    return to_message(row, pb.Skill)


class SkillService(pb_grpc.SkillServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.db = runtime.database

    async def ListSkills(self, request, context):
        caller = require_caller(context)
        where = (holds(SkillRow.tags, request.tag),) if request.tag else ()
        return pb.ListSkillsResponse(**await list_fields(
            self.db, skills, caller.tenant_id, PageRequest.of(request), _message,
            filters={"category": request.category, "skill_type": request.skill_type},
            search=request.search, where=where))

    async def CreateSkill(self, request, context):
        caller = require_caller(context)
        fields = values(request.skill, _WRITABLE)
        domain.check_skill(fields)
        fields["parameters"] = plain(fields["parameters"])

        def create(session: Session) -> SkillRow:
            row = skills.add(session, SkillRow(tenant_id=caller.tenant_id,
                                               created_by=caller.user_id, **fields))
            audit.record(session, caller, "create", "skill", row.id, name=row.name)
            return row

        return _message(await self.db.write(create))

    async def GetSkill(self, request, context):
        caller = require_caller(context)
        return await skills.fetch(self.db, caller.tenant_id, request.skill_id)

    async def UpdateSkill(self, request, context):
        caller = require_caller(context)
        update = changes(request.skill, _WRITABLE, list(request.update_mask.paths))
        domain.check_skill(update)
        if "parameters" in update:
            update["parameters"] = plain(update["parameters"])

        def apply(session: Session) -> SkillRow:
            row = skills.get(session, caller.tenant_id, request.skill_id, lock=True)
            return skills.change(session, row, update, caller)

        return _message(await self.db.write(apply))

    async def DeleteSkill(self, request, context):
        caller = require_caller(context)

        def remove(session: Session) -> str:
            row = skills.get(session, caller.tenant_id, request.skill_id, lock=True)
            return skills.remove(session, row, caller)

        name = await self.db.write(remove)
        return common_pb2.DeleteResponse(success=True, message=f"skill {name!r} deleted")

    async def ListSkillCategories(self, request, context):
        caller = require_caller(context)
        result = await self.db.read(facets(SkillRow, "category", caller.tenant_id,
                                           PageRequest.of(request)))
        return pb.ListSkillCategoriesResponse(**result.fields(
            lambda item: pb.FacetCount(name=item[0], count=item[1])))

    async def SearchSkills(self, request, context):
        caller = require_caller(context)
        page = PageRequest.of(request)
        query = request.q.strip().lower()
        if not query:
            raise invalid_field("q", "is required")
        result = await self.db.read(lambda s: domain.search(s, caller.tenant_id, query,
                                                            request.category, page))
        return pb.SearchSkillsResponse(**result.fields(_message))
