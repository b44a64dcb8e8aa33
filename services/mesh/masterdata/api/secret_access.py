"""SecretAccessService (internal): the only way a value leaves this service, and every time it
is audited, with the service that asked and its purpose."""

from __future__ import annotations

from sqlmodel import Session

from agentmesh.masterdata.v1 import masterdata_pb2 as pb
from agentmesh.masterdata.v1 import masterdata_pb2_grpc as pb_grpc
from mesh.masterdata import vault
from mesh.masterdata.state import MasterdataState
from mesh.masterdata.store import secrets
from mesh.runtime import audit
from mesh.runtime.context import require_caller
from mesh.runtime.errors import invalid_field
from mesh.runtime.service import Runtime


class SecretAccessService(pb_grpc.SecretAccessServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.db = runtime.database
        state: MasterdataState = runtime.state
        self.keyring = state.keyring

    async def RevealSecret(self, request, context):
        caller = require_caller(context)
        if not request.requested_by:
            raise invalid_field("requested_by", "is required: the service asking")

        def reveal(session: Session) -> pb.RevealSecretResponse:
            row = secrets.get(session, caller.tenant_id, request.secret_id)
            value = vault.open_value(self.keyring, row)
            audit.record(session, caller, "reveal", "secret", row.id, name=row.name,
                         requested_by=request.requested_by, purpose=request.purpose)
            return pb.RevealSecretResponse(secret_id=row.id, name=row.name, value=value,
                                           version=row.version, secret_type=row.secret_type)

        return await self.db.write(reveal)
