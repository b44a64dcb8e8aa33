"""One step of a run, by kind: its attempts (retries, backoff and per-attempt timeouts inside
one DBOS step), what each kind does (transform, condition, HTTP, tool, agent, sub-workflow), and
the approval step, which waits on a DBOS message. `StepKinds` is the half of a run
(`mesh.workflows.run.Run`, which extends it) that runs one step; the other half walks the graph.

A step's idempotency key, `<execution id>:<step id>:<attempt>`, goes to tools (gRPC metadata
`idempotency-key`), agents and HTTP servers (header `Idempotency-Key`); a step cut off by a
crash re-runs with the same key. A step acts as the execution's starter: the identity its calls
carry, and the scope each call needs (checked here: a background step never passes the
gateway).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from typing import Any

import grpc
import httpx2
from dbos import DBOS
from google.protobuf import json_format, struct_pb2

from agentmesh.workflows.v1 import workflows_pb2 as pb
from mesh.runtime.context import (API_KEY_HEADER, CORRELATION_HEADER, SCOPES_HEADER,
                                  TENANT_HEADER, USER_HEADER, holds)
from mesh.runtime.errors import DomainError
from mesh.workflows import children, limits
from mesh.workflows import definition as defn
from mesh.workflows.engine import Engine
from mesh.workflows.failures import Failure, StepFailure
from mesh.workflows.models import ENDED, ExecutionRow
from mesh.workflows.projection import Projection, error_record
from mesh.workflows.store import iso

T = pb.StepType
E = "EXECUTION_STATUS_"
S = "STEP_STATUS_"
APPROVAL_WAIT_SECONDS = 7 * 24 * 3600
PURE = {T.STEP_TYPE_TRANSFORM, T.STEP_TYPE_CONDITION}
# An HTTP step's wait for each read or write (the step's own timeout when that is longer).
HTTP_STEP_TIMEOUT = 30.0
# The RPCs steps call, whose scopes (from the contract) the execution's starter must hold.
EXECUTE_TOOL = "/agentmesh.tools.v1.ToolService/ExecuteTool"
INTERACT_WITH_AGENT = "/agentmesh.agents.v1.AgentService/InteractWithAgent"
EXECUTE_WORKFLOW = "/agentmesh.workflows.v1.WorkflowService/ExecuteWorkflow"
SCOPE_NOT_HELD = "SCOPE_NOT_HELD"
# Failures a retry cannot change: a bad expression, a refused address, a scope not held.
GOVERNANCE_DENIED = "GOVERNANCE_DENIED"
NEVER_RETRIED = {"EXPRESSION_FAILED", "EGRESS_DENIED", SCOPE_NOT_HELD, GOVERNANCE_DENIED}


@functools.cache
def _scope_of(rpc: str) -> str:
    from mesh import contract

    return contract.default().rpc(rpc).scope


class StepKinds:
    """The steps' half of a run. What it reads of the run (set by `Run.__init__`) is declared
    here; `document`, `resolve_inputs`, `set_state` and `record` are the walk's (Run's)."""

    engine: Engine
    projection: Projection
    execution_id: str
    tenant_id: str
    # Who the steps act as: the execution's starter, the API key it came with, its scopes.
    created_by: str
    api_key_id: str
    scopes: frozenset[str]
    graph: defn.Graph
    # The workflow's slug: the resource governance decides each step on.
    workflow_key: str

    # -- attempts: the body of the step's DBOS step --
    async def attempts(self, sid: str, args: dict | None, early: dict | None) -> dict:
        """{"ok": True, "output": ...} or {"ok": False, "code": ..., "message": ...}, which the
        run records; checkpointed by DBOS, so a replay gets it without running the step."""
        step = self.graph.steps[sid]
        if early is None:
            early = await self._governed(step, sid)
        policy = step.retry_policy
        max_attempts = max(1, policy.max_attempts)
        backoff = defn.duration_seconds(policy, "initial_backoff") or 1.0
        multiplier = policy.backoff_multiplier or 2.0
        max_backoff = defn.duration_seconds(policy, "max_backoff") or 60.0
        timeout = defn.duration_seconds(step, "timeout")
        if step.type in PURE and early is None:
            # No effect outside the run: no attempt to mark before it, one write after it.
            try:
                work = self.perform(step, args, "")
                return {"ok": True, "output": await (asyncio.wait_for(work, timeout)
                                                     if timeout else work),
                        "attempts": 1}
            except defn.ExpressionError as exc:
                failure = StepFailure("EXPRESSION_FAILED", str(exc))
            except TimeoutError as exc:
                failure = StepFailure("TIMEOUT", f"step {sid!r} took longer than {timeout:g}s"
                                      if timeout else f"step {sid!r}: {exc}")

            def failed_pure(state: dict, row: ExecutionRow):
                state["attempts"] = state.get("attempts", 0) + 1
                row.errors = [*row.errors, error_record(sid, failure.code, failure.message)]
            await self.projection.step_state(self.execution_id, sid, failed_pure)
            return {"ok": False, "code": failure.code, "message": failure.message}
        while True:
            def begin(state: dict, row: ExecutionRow):
                if state["status"] == S + "COMPLETED" and "output" in state:
                    return {"done": state["output"]}  # completed in an earlier run
                if row.status in ENDED:
                    return {"ended": row.status}
                if state.get("open_attempt"):  # cut off by a crash: the same attempt again
                    attempt = state["open_attempt"]
                else:
                    attempt = state.get("attempts", 0) + 1
                    state["attempts"] = attempt
                    state["run_attempts"] = state.get("run_attempts", 0) + 1
                    state["open_attempt"] = attempt
                state["status"] = S + "RUNNING"
                state["name"] = step.name or sid
                state["started_at"] = state.get("started_at") or iso()
                if row.status == E + "QUEUED":
                    row.status = E + "RUNNING"
                return {"attempt": attempt, "run_attempts": state["run_attempts"]}
            began = await self.projection.step_state(self.execution_id, sid, begin)
            if began is None or "ended" in began:
                return {"ok": False, "code": "CANCELLED",
                        "message": f"the execution ended before step {sid!r} ran"}
            if "done" in began:
                return {"ok": True, "output": began["done"]}
            attempt = began["attempt"]
            key = f"{self.execution_id}:{sid}:{attempt}"
            try:
                if early is not None:
                    raise StepFailure(early["code"], early["message"])
                work = self.perform(step, args, key)
                output = await (asyncio.wait_for(work, timeout) if timeout else work)
                return {"ok": True, "output": output}
            except TimeoutError as exc:
                failure = StepFailure("TIMEOUT", f"attempt {attempt} of step {sid!r} took "
                                                 f"longer than {timeout:g}s" if timeout else
                                      f"attempt {attempt} of step {sid!r}: {exc}")
            except StepFailure as exc:
                failure = exc
            except defn.ExpressionError as exc:
                failure = StepFailure("EXPRESSION_FAILED", str(exc))
            retryable = not policy.retryable_errors or failure.code in policy.retryable_errors
            last = began["run_attempts"] >= max_attempts or not retryable \
                or failure.code in NEVER_RETRIED or failure.code in limits.PERMANENT

            def failed(state: dict, row: ExecutionRow):
                state["open_attempt"] = 0
                state["error"] = failure.message
                row.errors = [*row.errors, error_record(sid, failure.code, failure.message)]
            await self.projection.step_state(self.execution_id, sid, failed)
            if last:
                return {"ok": False, "code": failure.code, "message": failure.message}
            wait = min(max_backoff, backoff * multiplier ** (began["run_attempts"] - 1))
            await asyncio.sleep(wait)

    async def _governed(self, step: pb.Step, sid: str) -> dict | None:
        """The step decided by governance before it runs (`execute_workflow` on the workflow,
        the step in `context.arguments`), as the execution's starter; a denial is the step's
        failure `GOVERNANCE_DENIED` naming the decision, never retried."""
        return await self.decide_step(step, sid)

    async def decide_step(self, step: pb.Step, sid: str) -> dict | None:
        """Governance's decision on the step (`_governed`): the failure a denial makes, or
        None."""
        from mesh.governance import client as governance

        if not governance.enabled(self.engine.peers):
            return None
        metadata = [item for item in self._metadata("") if item[0] != "idempotency-key"]
        try:
            decision = await governance.check_workflow_step(
                self.engine.peers, workflow=self.workflow_key, step=sid,
                arguments={"type": T.Name(step.type).removeprefix("STEP_TYPE_").lower(),
                           "execution_id": self.execution_id},
                metadata=metadata)
        except DomainError as exc:
            return {"code": exc.reason, "message": exc.message}
        if decision.allowed:
            return None
        policies = ", ".join(decision.matching_policies)
        return {"code": GOVERNANCE_DENIED,
                "message": f"step {sid!r} denied by governance: {decision.reason} (decision "
                           f"{decision.id}{', ' + policies if policies else ''})"}

    # -- what each kind does --
    async def perform(self, step: pb.Step, args: dict, key: str) -> Any:
        kind = step.type
        # Off the event loop unless bounded (mesh.workflows.expressions), under the step's
        # timeout: the sandbox's worker is killed when it passes.
        timeout = defn.duration_seconds(step, "timeout")
        if kind == T.STEP_TYPE_TRANSFORM:
            return await defn.evaluate_async(step.transform.expression, self.document(args),
                                             timeout=timeout, tenant=self.tenant_id)
        if kind == T.STEP_TYPE_CONDITION:
            value = await defn.evaluate_async(step.condition.expression, self.document(args),
                                              timeout=timeout, tenant=self.tenant_id)
            return {"result": bool(value)}
        if kind == T.STEP_TYPE_HTTP:
            return await self._http(step, args, key)
        if kind == T.STEP_TYPE_TOOL:
            return await self._tool(step, args, key)
        if kind == T.STEP_TYPE_AGENT:
            return await self._agent(step, args, key)
        if kind == T.STEP_TYPE_SUB_WORKFLOW:
            return await self._sub_workflow(step, args)
        raise StepFailure("UNSUPPORTED_STEP", f"step type {T.Name(kind)} cannot run here")

    def _metadata(self, key: str) -> list[tuple[str, str]]:
        """The identity tool and agent calls carry: the starter (an API key as that key), with
        the scopes in force when the execution started."""
        metadata = [(TENANT_HEADER, self.tenant_id), (USER_HEADER, self.created_by),
                    (SCOPES_HEADER, " ".join(sorted(self.scopes))),
                    (CORRELATION_HEADER, self.execution_id), ("idempotency-key", key)]
        if self.api_key_id:
            metadata.append((API_KEY_HEADER, self.api_key_id))
        return metadata

    def _require(self, rpc: str) -> None:
        """A step may do only what its starter may: the scope the contract gives the RPC the
        step calls (the gateway's check, which a background step does not pass through)."""
        needed = _scope_of(rpc)
        if needed and not holds(self.scopes, needed):
            raise StepFailure(SCOPE_NOT_HELD, f"the execution acts as its starter, whose scopes "
                              f"({' '.join(sorted(self.scopes)) or 'none'}) do not include "
                              f"{needed}")

    async def _http(self, step: pb.Step, args: dict, key: str) -> Any:
        config = step.http
        method = (config.method or "POST").upper()
        url = await defn.render_text_async(config.url, args, tenant=self.tenant_id)
        body = {**json_format.MessageToDict(config.body), **args}
        headers = {**dict(config.headers), "Idempotency-Key": key}
        # A step timeout bounds the attempt (TIMEOUT); a longer one lets each read wait longer.
        timeout = max(defn.duration_seconds(step, "timeout") or 0.0, HTTP_STEP_TIMEOUT)
        try:
            reply = await self.engine.http.request(
                method, url, headers=headers, json=body if method not in ("GET", "DELETE") else None,
                timeout=timeout)
        except httpx2.HTTPError as exc:
            raise StepFailure("HTTP_UNREACHABLE", f"{method} {url}: {exc}") from None
        except DomainError as exc:  # EGRESS_DENIED (nothing was sent), RESPONSE_TOO_LARGE
            raise StepFailure(exc.reason, exc.message) from None
        if reply.status_code >= 500:
            raise StepFailure("HTTP_5XX", f"{method} {url} answered {reply.status_code}")
        if reply.status_code >= 400:
            raise StepFailure("HTTP_4XX", f"{method} {url} answered {reply.status_code}: "
                                          f"{reply.text[:200]}")
        try:
            return reply.json()
        except ValueError:
            return {"text": reply.text, "status": reply.status_code}

    async def _tool(self, step: pb.Step, args: dict, key: str) -> Any:
        from agentmesh.tools.v1 import tools_pb2, tools_pb2_grpc

        self._require(EXECUTE_TOOL)
        arguments = struct_pb2.Struct()
        arguments.update({**json_format.MessageToDict(step.tool.arguments), **args})
        stub = self.engine.peers.stub(tools_pb2_grpc.ToolServiceStub)
        reply = await _once("TOOL", lambda: stub.ExecuteTool(tools_pb2.ExecuteToolRequest(
            tool_id=step.tool.tool_id, arguments=arguments), metadata=self._metadata(key)))
        if reply.error or reply.status in (tools_pb2.ToolExecutionStatus.Value(n) for n in
                                           tools_pb2.ToolExecutionStatus.keys()
                                           if "FAIL" in n or "TIMED" in n):
            raise StepFailure("TOOL_FAILED", reply.error or "the tool failed")
        return json_format.MessageToDict(reply.output)

    async def _agent(self, step: pb.Step, args: dict, key: str) -> Any:
        from agentmesh.agents.v1 import agents_pb2, agents_pb2_grpc

        self._require(INTERACT_WITH_AGENT)
        context = struct_pb2.Struct()
        context.update({**args, "idempotency_key": key, "execution_id": self.execution_id})
        stub = self.engine.peers.stub(agents_pb2_grpc.AgentServiceStub)
        message = await defn.render_text_async(step.agent.prompt, args, tenant=self.tenant_id)
        reply = await _once("AGENT", lambda: stub.InteractWithAgent(
            agents_pb2.InteractWithAgentRequest(
                agent_id=step.agent.agent_id, message=message, context=context,
                version=step.agent.agent_version, label=step.agent.agent_label),
            metadata=self._metadata(key)))
        return {"reply": reply.reply, "call_id": reply.call_id, "tokens": reply.tokens,
                "agent_version": reply.agent_version}

    async def _sub_workflow(self, step: pb.Step, args: dict) -> Any:
        self._require(EXECUTE_WORKFLOW)
        inputs = {**json_format.MessageToDict(step.sub_workflow.inputs), **args}
        child_id, child = await children.make_child(
            self.engine, self.execution_id, step.id, step.sub_workflow.workflow_id, inputs,
            tenant_id=self.tenant_id, created_by=self.created_by, api_key_id=self.api_key_id,
            scopes=self.scopes)
        # Recorded before the child starts, so that stopping the parent stops the child too.
        await self.set_state(step.id, child_execution_id=child_id)
        await children.start_child(self.engine, child_id, child)
        return await children.wait_child(self.engine, child_id)

    # -- approval: the execution waits on a DBOS message --
    async def approval(self, sid: str) -> Failure:
        step = self.graph.steps[sid]
        needed = max(1, step.approval.min_approvals)
        timeout = defn.duration_seconds(step, "timeout") or APPROVAL_WAIT_SECONDS
        try:
            args = await self.resolve_inputs(step)
            message = await defn.render_text_async(step.approval.message, args,
                                                   tenant=self.tenant_id)
        except (defn.ExpressionError, TimeoutError) as exc:
            problem = error_record(sid, "EXPRESSION_FAILED", str(exc))
            await self.projection.step_state(self.execution_id, sid, lambda state, row: setattr(
                row, "errors", [*row.errors, problem]))
            return await self.record(sid, {"ok": False, "code": problem["code"],
                                           "message": problem["message"]})

        def wait(state: dict, row: ExecutionRow):
            if state["status"] == S + "PENDING":
                state.update(status=S + "WAITING_APPROVAL", name=step.name or sid,
                             started_at=state.get("started_at") or iso(),
                             attempts=state.get("attempts", 0) + 1)
                if message:
                    state["message"] = message
            if row.status not in ENDED:
                row.status = E + "WAITING_APPROVAL"
        await self.projection.step_state(self.execution_id, sid, wait)
        # A checkpoint named after the step, so a retry can fork the run right here.
        await DBOS.run_step_async({"name": f"step:{sid}"}, _waiting, sid)
        approvers: set[str] = set()
        outcome = None
        while len(approvers) < needed:
            decision = await DBOS.recv_async(f"approval:{sid}", timeout_seconds=timeout)
            if decision is None:
                outcome = ("APPROVAL_TIMEOUT",
                           f"step {sid!r} got no decision within {timeout:g}s")
                break
            if not decision["approved"]:
                outcome = ("APPROVAL_REJECTED",
                           f"step {sid!r} rejected by {decision['user_id']}: "
                           f"{decision.get('comment', '')}")
                break
            approvers.add(decision["user_id"])
        if outcome is None:
            result = {"ok": True, "output": {"approved": True, "approvers": sorted(approvers)}}

            def resume(row: ExecutionRow):
                if row.status == E + "WAITING_APPROVAL":
                    row.status = E + "RUNNING"
            await self.projection.update(self.execution_id, resume)
            return await self.record(sid, result)
        code, text = outcome
        await self.projection.step_state(self.execution_id, sid, lambda state, row: setattr(
            row, "errors", [*row.errors, error_record(sid, code, text)]))
        return await self.record(sid, {"ok": False, "code": code, "message": text})


async def _once(kind: str, call: Callable[[], Any]) -> Any:
    """A tool or agent call made once in effect: it carries the step attempt's key, which
    the peer honours (mesh.runtime.idempotency). Replayed after a crash, the call gets the
    recorded answer; while the interrupted first call still holds the key (its lease runs
    out CLAIM_LEASE_SECONDS after its process died) this waits, then runs it."""
    from mesh.runtime.errors import reason_of
    from mesh.runtime.idempotency import CLAIM_LEASE_SECONDS, IN_PROGRESS

    deadline = time.monotonic() + CLAIM_LEASE_SECONDS + 15
    while True:
        try:
            return await call()
        except grpc.aio.AioRpcError as exc:
            if (exc.code() == grpc.StatusCode.ABORTED and reason_of(exc) == IN_PROGRESS
                    and time.monotonic() < deadline):
                await asyncio.sleep(1.0)
                continue
            raise _rpc_failure(kind, exc) from None
        except Exception as exc:  # noqa: BLE001 - peers not configured
            raise StepFailure(f"{kind}_UNAVAILABLE", str(exc)) from None


def _rpc_failure(kind: str, exc: grpc.aio.AioRpcError) -> StepFailure:
    from mesh.runtime.errors import reason_of

    code = exc.code()
    if code == grpc.StatusCode.PERMISSION_DENIED and reason_of(exc) == GOVERNANCE_DENIED:
        return StepFailure(GOVERNANCE_DENIED, exc.details() or "denied by governance")
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return StepFailure(f"{kind}_UNAVAILABLE", f"the {kind.lower()}s service cannot run this "
                                                  f"yet (UNIMPLEMENTED): {exc.details()}")
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return StepFailure(f"{kind}_UNAVAILABLE", f"{code.name}: {exc.details()}")
    if code == grpc.StatusCode.NOT_FOUND:
        return StepFailure(f"{kind}_NOT_FOUND", exc.details() or "not found")
    return StepFailure(f"{kind}_FAILED", f"{code.name}: {exc.details()}")


async def _waiting(step_id: str) -> str:
    return step_id
