"""A user's decision on an approval step: the step must be one of the execution's approval
steps and waiting, the user one of its approvers; the decision is recorded on the step, then
sent to the interpreter waiting for it (mesh.workflows.steps).
"""

from __future__ import annotations

import grpc

from agentmesh.identity.v1 import identity_pb2, identity_pb2_grpc
from agentmesh.workflows.v1 import workflows_pb2 as pb
from mesh.runtime.context import Caller
from mesh.runtime.db import Database
from mesh.runtime.errors import (FailedPrecondition, NotFound, PermissionDenied, Unavailable,
                                 invalid_field)
from mesh.runtime.peers import Peers
from mesh.runtime.tables import utcnow
from mesh.workflows import definition as defn
from mesh.workflows.engine import Engine
from mesh.workflows.models import ExecutionRow
from mesh.workflows.store import timestamp, version_of


async def decide(db: Database, peers: Peers, engine: Engine, caller: Caller, row: ExecutionRow,
                 step_id: str, approved: bool, comment: str) -> None:
    if not step_id:
        raise invalid_field("step_id", "is required")

    version = await db.read(lambda s: version_of(s, row.workflow_id, row.workflow_version))
    steps = {s.id: s for s in defn.workflow_from_json(version.workflow).steps}
    step = steps.get(step_id)
    if step is None or step.type != pb.STEP_TYPE_APPROVAL:
        raise NotFound(f"execution {row.id} has no approval step {step_id!r}",
                       reason="STEP_NOT_FOUND", details={"step": step_id})
    approvers = list(step.approval.approvers)
    if approvers and not await is_approver(peers, caller, approvers):
        raise PermissionDenied(f"{caller.user_id} is not an approver of step {step_id!r}",
                               reason="NOT_AN_APPROVER", details={"step": step_id})
    from mesh.governance import client as governance

    slug = row.workflow_slug or row.workflow_id
    await governance.require(peers, f"the {'approval' if approved else 'rejection'} of step "
                             f"{step_id!r}", action="approve", resource_type="Workflow",
                             resource_id=slug, arguments={
                                 "step": step_id, "execution_id": row.id,
                                 "approved": approved})
    decision = {"user_id": caller.user_id, "approved": approved,
                "comment": comment, "decided_at": timestamp(utcnow())}

    def record(state: dict, execution: ExecutionRow):
        if state["status"] != "STEP_STATUS_WAITING_APPROVAL":
            return False
        state["decisions"] = [*state.get("decisions", []), decision]
        return True
    if not await engine.step_state(row.id, step_id, record):
        raise FailedPrecondition(f"step {step_id!r} is not waiting for approval",
                                 reason="STEP_NOT_WAITING", details={"step": step_id})
    await engine.send_decision(row.id, step_id, decision)


async def is_approver(peers: Peers, caller: Caller, approvers: list[str]) -> bool:
    """Whether an approval step's `approvers` name the caller: by user id, e-mail address
    (any case) or `role:<role>` (`role:admin`, `role:user`, ...). The address and role come
    from the identity service, asked as the caller, only when an approver needs them."""
    if caller.user_id in approvers:
        return True
    wanted = {a.strip().lower() for a in approvers}
    if not any("@" in a or a.startswith("role:") for a in wanted):
        return False
    try:
        me = await peers.stub(identity_pb2_grpc.IdentityServiceStub).GetMe(
            identity_pb2.GetMeRequest())
    except grpc.aio.AioRpcError as exc:
        if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAUTHENTICATED):
            return False
        raise Unavailable("cannot tell whether you are an approver: the identity service "
                          "does not answer; retry", reason="IDENTITY_UNAVAILABLE") from None
    role = identity_pb2.Role.Name(me.role).lower()  # role_admin
    return bool(wanted & {me.email.lower(), f"role:{role.removeprefix('role_')}",
                          f"role:{role}"})
