"""SecretService: secrets' metadata and their values, sealed (mesh.masterdata.vault); a value
is written here but never read back through this service."""

from __future__ import annotations

from sqlmodel import Session

from agentmesh.common.v1 import common_pb2
from agentmesh.masterdata.v1 import masterdata_pb2 as pb
from agentmesh.masterdata.v1 import masterdata_pb2_grpc as pb_grpc
from mesh.masterdata import vault
from mesh.masterdata.models import SecretRow
from mesh.masterdata.state import MasterdataState
from mesh.masterdata.store import list_fields, secrets
from mesh.runtime import audit
from mesh.runtime.context import require_caller
from mesh.runtime.convert import changes, to_message, values, writable
from mesh.runtime.paging import PageRequest
from mesh.runtime.repository import holds
from mesh.runtime.service import Runtime
from mesh.runtime.tables import utcnow

_WRITABLE = writable(pb.Secret)


def _message(row: SecretRow) -> pb.Secret:
    return to_message(row, pb.Secret)


class SecretService(pb_grpc.SecretServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.db = runtime.database
        state: MasterdataState = runtime.state
        self.keyring = state.keyring

    async def ListSecrets(self, request, context):
        caller = require_caller(context)
        where = (holds(SecretRow.tags, request.tag),) if request.tag else ()
        return pb.ListSecretsResponse(**await list_fields(
            self.db, secrets, caller.tenant_id, PageRequest.of(request), _message,
            filters={"secret_type": pb.SecretType.Name(request.secret_type)
                     if request.secret_type else None},
            search=request.search, where=where))

    async def CreateSecret(self, request, context):
        caller = require_caller(context)
        fields = values(request.secret, _WRITABLE)
        vault.check_fields(fields, creating=True)
        value = fields.pop("value")

        def create(session: Session) -> SecretRow:
            row = SecretRow(tenant_id=caller.tenant_id, created_by=caller.user_id, version=1,
                            last_rotated_at=utcnow(), **fields)
            vault.store_value(self.keyring, row, value)
            secrets.add(session, row)
            audit.record(session, caller, "create", "secret", row.id, name=row.name)
            return row

        return _message(await self.db.write(create))

    async def GetSecret(self, request, context):
        caller = require_caller(context)
        return await secrets.fetch(self.db, caller.tenant_id, request.secret_id)

    async def UpdateSecret(self, request, context):
        caller = require_caller(context)
        update = changes(request.secret, _WRITABLE, list(request.update_mask.paths))
        vault.check_fields(update, creating=False)
        value = update.pop("value", None)

        def apply(session: Session) -> SecretRow:
            row = secrets.get(session, caller.tenant_id, request.secret_id, lock=True)
            if update.get("name", row.name) != row.name:
                vault.refuse_if_referenced(session, row, "renamed")
            for key, field_value in update.items():
                setattr(row, key, field_value)
            if value:
                vault.store_value(self.keyring, row, value)
                row.version += 1
                row.last_rotated_at = utcnow()
            audit.record(session, caller, "update", "secret", row.id,
                         fields=sorted([*update, *(["value"] if value else [])]))
            return secrets.save(session, row)

        return _message(await self.db.write(apply))

    async def DeleteSecret(self, request, context):
        caller = require_caller(context)

        def remove(session: Session) -> str:
            row = secrets.get(session, caller.tenant_id, request.secret_id, lock=True)
            vault.refuse_if_referenced(session, row, "deleted")
            return secrets.remove(session, row, caller)

        name = await self.db.write(remove)
        return common_pb2.DeleteResponse(success=True, message=f"secret {name!r} deleted")
