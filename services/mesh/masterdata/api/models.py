"""ModelService: model configurations, checked against their provider, and the providers."""

from __future__ import annotations

from sqlmodel import Session

from agentmesh.common.v1 import common_pb2
from agentmesh.masterdata.v1 import masterdata_pb2 as pb
from agentmesh.masterdata.v1 import masterdata_pb2_grpc as pb_grpc
from mesh.masterdata import model_config
from mesh.masterdata.checks import check_name
from mesh.masterdata.models import ModelRow
from mesh.masterdata.rules import PROVIDERS
from mesh.masterdata.store import facets, list_fields, models
from mesh.runtime import audit
from mesh.runtime.context import require_caller
from mesh.runtime.convert import changes, to_message, values, writable
from mesh.runtime.paging import PageRequest
from mesh.runtime.service import Runtime

_WRITABLE = writable(pb.Model)


def _message(row: ModelRow) -> pb.Model:
    return to_message(row, pb.Model)


def _provider_facet(item) -> pb.FacetCount:
    p = PROVIDERS[item[0]]
    return pb.FacetCount(name=p.name, count=item[1], description=p.description,
                         requirements=pb.ProviderRequirements(
                             secret_required=p.secret_required,
                             endpoint_url_required=p.endpoint_url_required,
                             default_endpoint_url=p.default_endpoint_url,
                             required_parameters=list(p.required_parameters)))


class ModelService(pb_grpc.ModelServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.db = runtime.database

    async def ListModels(self, request, context):
        caller = require_caller(context)
        return pb.ListModelsResponse(**await list_fields(
            self.db, models, caller.tenant_id, PageRequest.of(request), _message,
            filters={"provider": request.provider,
                     "model_type": pb.ModelType.Name(request.model_type)
                     if request.model_type else None,
                     "status": pb.ModelStatus.Name(request.status) if request.status else None},
            search=request.search))

    async def CreateModel(self, request, context):
        caller = require_caller(context)
        fields = values(request.model, _WRITABLE)
        check_name(fields["name"], model_config.RESERVED)
        model_config.normalise(fields)
        model_config.check(fields)

        def create(session: Session) -> ModelRow:
            model_config.check_secret_ref(session, caller.tenant_id, fields["secret_ref"])
            row = models.add(session, ModelRow(tenant_id=caller.tenant_id,
                                               created_by=caller.user_id, **fields))
            audit.record(session, caller, "create", "model", row.id, name=row.name)
            return row

        return _message(await self.db.write(create))

    async def GetModel(self, request, context):
        caller = require_caller(context)
        return await models.fetch(self.db, caller.tenant_id, request.model_id)

    async def UpdateModel(self, request, context):
        caller = require_caller(context)
        update = changes(request.model, _WRITABLE, list(request.update_mask.paths))
        if "name" in update:
            check_name(update["name"], model_config.RESERVED)
        model_config.normalise(update)

        def apply(session: Session) -> ModelRow:
            row = models.get(session, caller.tenant_id, request.model_id, lock=True)
            state = {name: getattr(row, name) for name in _WRITABLE}
            state.update(update)
            model_config.check(state)
            if "secret_ref" in update:
                model_config.check_secret_ref(session, caller.tenant_id, update["secret_ref"])
            return models.change(session, row, update, caller)

        return _message(await self.db.write(apply))

    async def DeleteModel(self, request, context):
        caller = require_caller(context)

        def remove(session: Session) -> str:
            row = models.get(session, caller.tenant_id, request.model_id, lock=True)
            return models.remove(session, row, caller)

        name = await self.db.write(remove)
        return common_pb2.DeleteResponse(success=True, message=f"model {name!r} deleted")

    async def ListModelProviders(self, request, context):
        caller = require_caller(context)
        result = await self.db.read(facets(ModelRow, "provider", caller.tenant_id,
                                           PageRequest.of(request), known=PROVIDERS))
        return pb.ListModelProvidersResponse(**result.fields(_provider_facet))
