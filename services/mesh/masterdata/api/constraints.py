"""ConstraintService: constraints, checked against their type's rules, and the types."""

from __future__ import annotations

from sqlmodel import Session

from agentmesh.common.v1 import common_pb2
from agentmesh.masterdata.v1 import masterdata_pb2 as pb
from agentmesh.masterdata.v1 import masterdata_pb2_grpc as pb_grpc
from mesh.masterdata import constraints as domain
from mesh.masterdata.checks import check_name
from mesh.masterdata.models import ConstraintRow
from mesh.masterdata.rules import CONSTRAINT_TYPES
from mesh.masterdata.store import constraints, facets, list_fields
from mesh.runtime import audit
from mesh.runtime.context import require_caller
from mesh.runtime.convert import changes, plain, to_message, values, writable
from mesh.runtime.paging import PageRequest
from mesh.runtime.service import Runtime

_WRITABLE = writable(pb.Constraint)


def _message(row: ConstraintRow) -> pb.Constraint:
    return to_message(row, pb.Constraint)


def _type_facet(item) -> pb.FacetCount:
    description, schema = CONSTRAINT_TYPES[item[0]]
    out = pb.FacetCount(name=item[0], count=item[1], description=description)
    out.rules_schema.update(schema)
    return out


class ConstraintService(pb_grpc.ConstraintServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.db = runtime.database

    async def ListConstraints(self, request, context):
        caller = require_caller(context)
        where = (ConstraintRow.enabled == request.enabled,) if request.HasField("enabled") else ()
        filters = {
            "constraint_type": pb.ConstraintType.Name(request.constraint_type)
            if request.constraint_type else None,
            "enforcement": pb.ConstraintEnforcement.Name(request.enforcement)
            if request.enforcement else None}
        return pb.ListConstraintsResponse(**await list_fields(
            self.db, constraints, caller.tenant_id, PageRequest.of(request), _message,
            filters=filters, search=request.search, where=where))

    async def CreateConstraint(self, request, context):
        caller = require_caller(context)
        fields = values(request.constraint, _WRITABLE)
        check_name(fields["name"], domain.RESERVED)
        fields["rules"] = plain(fields["rules"])
        domain.check_rules(fields)
        fields["enabled"] = request.constraint.enabled if request.constraint.HasField("enabled") \
            else True
        domain.default_enforcement(fields)

        def create(session: Session) -> ConstraintRow:
            row = constraints.add(session, ConstraintRow(tenant_id=caller.tenant_id,
                                                         created_by=caller.user_id, **fields))
            audit.record(session, caller, "create", "constraint", row.id, name=row.name)
            return row

        return _message(await self.db.write(create))

    async def GetConstraint(self, request, context):
        caller = require_caller(context)
        return await constraints.fetch(self.db, caller.tenant_id, request.constraint_id)

    async def UpdateConstraint(self, request, context):
        caller = require_caller(context)
        update = changes(request.constraint, _WRITABLE, list(request.update_mask.paths))
        if "name" in update:
            check_name(update["name"], domain.RESERVED)
        if "rules" in update:
            update["rules"] = plain(update["rules"])
        domain.default_enforcement(update)

        def apply(session: Session) -> ConstraintRow:
            row = constraints.get(session, caller.tenant_id, request.constraint_id, lock=True)
            domain.check_rules({
                "constraint_type": update.get("constraint_type", row.constraint_type),
                "rules": update.get("rules", row.rules)})
            return constraints.change(session, row, update, caller)

        return _message(await self.db.write(apply))

    async def DeleteConstraint(self, request, context):
        caller = require_caller(context)

        def remove(session: Session) -> str:
            row = constraints.get(session, caller.tenant_id, request.constraint_id, lock=True)
            return constraints.remove(session, row, caller)

        name = await self.db.write(remove)
        return common_pb2.DeleteResponse(success=True, message=f"constraint {name!r} deleted")

    async def ListConstraintTypes(self, request, context):
        caller = require_caller(context)
        result = await self.db.read(facets(ConstraintRow, "constraint_type", caller.tenant_id,
                                           PageRequest.of(request), known=CONSTRAINT_TYPES))
        return pb.ListConstraintTypesResponse(**result.fields(_type_facet))
