"""Calls between services of one process (mesh.runtime.local) answer as gRPC does: the same
response, the same error (code, message, reason, the envelope trailer), the caller's identity,
the deadline, and nothing of the caller's context or objects shared with the handler. Each
case is made twice, in-process and over gRPC (AGENTMESH_LOCAL_CALLS=false), on the real
governance and identity services served by this test's event loop."""

from __future__ import annotations

import asyncio
import contextvars
import time
import uuid

import grpc
import pytest

from agentmesh.governance.v1 import governance_pb2 as gov
from agentmesh.governance.v1 import governance_pb2_grpc as gov_grpc
from agentmesh.identity.v1 import identity_pb2 as idn
from agentmesh.identity.v1 import identity_pb2_grpc as idn_grpc
from mesh import catalog
from mesh.runtime import local
from mesh.runtime.context import (CORRELATION_HEADER, SCOPES_HEADER, TENANT_HEADER,
                                  USER_HEADER)
from mesh.runtime.errors import from_peer, reason_of
from mesh.runtime.peers import Peers
from mesh.runtime.server import start
from mesh.runtime.settings import Settings

TENANT = str(uuid.uuid4())
IDENTITY = ((TENANT_HEADER, TENANT), (USER_HEADER, "user-1"), (SCOPES_HEADER, "*"),
            (CORRELATION_HEADER, "corr-local-1"))
DECIDE = gov.DecideRequest(request=gov.DecisionRequest(
    action="execute_workflow", resource_type="Workflow", resource_id="flow"))


async def _served(tmp_path, *names):
    settings = Settings(data_dir=tmp_path)
    running = [await start(catalog.definition(name), settings, port=0) for name in names]
    peers = ",".join(f"{r.definition.name}=127.0.0.1:{r.port}" for r in running)
    return running, peers


def _both(tmp_path, *names):
    """(running services, Peers calling them in-process, Peers calling them over gRPC)."""
    async def make():
        running, peers = await _served(tmp_path, *names)
        return (running, Peers(Settings(data_dir=tmp_path, peers=peers)),
                Peers(Settings(data_dir=tmp_path, peers=peers, local_calls=False)))
    return make()


async def _stop(running, *peers):
    for p in peers:
        await p.close()
    for r in running:
        await r.stop(0)


def _run_both(tmp_path, names, body):
    """`body(near, far)` with `names` served here: near calls in-process, far over gRPC."""
    async def scenario():
        running, near, far = await _both(tmp_path, *names)
        try:
            await body(near, far)
        finally:
            await _stop(running, near, far)
    asyncio.run(scenario())


def test_a_call_to_a_service_of_this_process_is_made_in_process_and_answers_alike(tmp_path):
    async def body(near, far):
        assert isinstance(near.channel("governance"), local.LocalChannel)
        assert isinstance(far.channel("governance"), grpc.aio.Channel)
        answers = []
        for peers in (near, far):
            stub = peers.stub(gov_grpc.GovernanceServiceStub)
            answers.append(await stub.Decide(DECIDE, metadata=IDENTITY))
        for decision in answers:  # decided for the caller the metadata names
            assert decision.allowed and decision.correlation_id == "corr-local-1"
            assert decision.resource == 'Workflow::"flow"'
        # the two answers differ only in what each decision made anew
        fresh = ("id", "decision_time_ms", "decision_time_us", "created_at")
        for field in fresh:
            for decision in answers:
                decision.ClearField(field)
        assert answers[0] == answers[1]
    _run_both(tmp_path, ("governance",), body)


def test_an_error_arrives_as_over_grpc_with_its_code_reason_and_envelope(tmp_path):
    async def body(near, far):
        errors = []
        for peers in (near, far):
            stub = peers.stub(gov_grpc.GovernanceServiceStub)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.GetPolicy(gov.GetPolicyRequest(policy_id="no-such-policy"),
                                     metadata=IDENTITY)
            errors.append(caught.value)
        local_error, network_error = errors
        assert local_error.code() == network_error.code() == grpc.StatusCode.NOT_FOUND
        assert local_error.details() == network_error.details()
        assert reason_of(local_error) == reason_of(network_error) == "POLICY_NOT_FOUND"
        as_domain = [from_peer(e, "governance") for e in errors]
        assert as_domain[0].reason == as_domain[1].reason == "POLICY_NOT_FOUND"
        assert as_domain[0].details == as_domain[1].details
        # a call without the caller's identity is refused, as over the wire
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await near.stub(gov_grpc.GovernanceServiceStub).Decide(DECIDE)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    _run_both(tmp_path, ("governance",), body)


def test_the_deadline_ends_a_held_call_and_the_handler_with_it(tmp_path):
    async def body(near, far):
        for peers in (near, far):
            stub = peers.stub(idn_grpc.IdentityServiceStub)
            current = await stub.ListRevocations(idn.ListRevocationsRequest())
            started = time.monotonic()
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.ListRevocations(idn.ListRevocationsRequest(
                    known_version=current.version, wait_seconds=30), timeout=0.3)
            assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert time.monotonic() - started < 5
    _run_both(tmp_path, ("identity",), body)


MARK = contextvars.ContextVar("mark", default="unset")


def test_the_handler_shares_no_context_and_no_objects_with_its_caller(tmp_path):
    async def body(near, far):
        MARK.set("the caller's")
        request = gov.DecideRequest()
        request.CopyFrom(DECIDE)
        stub = near.stub(gov_grpc.GovernanceServiceStub)
        first = await stub.Decide(request, metadata=IDENTITY)
        request.request.resource_id = "changed-after-the-call"
        first.reason = "changed by the caller"
        second = await stub.Decide(DECIDE, metadata=IDENTITY)
        assert second.resource == 'Workflow::"flow"' and second.reason != first.reason
    _run_both(tmp_path, ("governance",), body)

    seen = []

    async def handler(request, context):  # what a handler finds of the caller's context
        seen.append((MARK.get(), dict(context.invocation_metadata())))
        MARK.set("the handler's")
        return gov.Decision(reason="ok")

    async def call():
        MARK.set("the caller's")
        method = grpc.unary_unary_rpc_method_handler(
            handler, gov.DecideRequest.FromString, gov.Decision.SerializeToString)
        channel = local.LocalChannel({"/x.Y/Decide": method}, lambda: None,
                                     lambda given: [*given, ("x-token", "t")], lambda m, t: 5.0)
        answer = await channel.unary_unary("/x.Y/Decide", gov.DecideRequest.SerializeToString,
                                           gov.Decision.FromString)(DECIDE, metadata=IDENTITY)
        return answer, MARK.get()
    answer, after = asyncio.run(call())
    assert answer.reason == "ok" and after == "the caller's"
    assert seen[0][0] == "unset"  # the caller's context did not reach the handler
    assert seen[0][1][TENANT_HEADER] == TENANT and seen[0][1]["x-token"] == "t"


def test_a_service_stopped_here_is_called_over_the_network(tmp_path):
    async def scenario():
        running, near, _ = await _both(tmp_path, "governance")
        address = near.address("governance")
        assert local.hosted("governance", address) is not None
        await running[0].stop(0)
        try:
            assert local.hosted("governance", address) is None
            channel = near.channel("governance")
            assert not isinstance(channel, local.LocalChannel)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await near.stub(gov_grpc.GovernanceServiceStub).Decide(
                    DECIDE, metadata=IDENTITY, timeout=2)
            assert caught.value.code() in (grpc.StatusCode.UNAVAILABLE,
                                           grpc.StatusCode.DEADLINE_EXCEEDED)
        finally:
            await near.close()
    asyncio.run(scenario())


def test_another_event_loop_is_not_served_in_process(tmp_path):
    async def serve():
        return await _served(tmp_path, "governance")
    loop = asyncio.new_event_loop()
    try:
        running, peers = loop.run_until_complete(serve())

        async def elsewhere():  # a second loop of this process: a test harness's shape
            return local.hosted("governance", peers.split("=", 1)[1])
        assert asyncio.run(elsewhere()) is None
        loop.run_until_complete(_stop(running))
    finally:
        loop.close()


def test_spans_are_handed_to_the_trace_receiver_of_this_process_without_otlp(tmp_path):
    """The span exporter (telemetry.InProcessFirst) gives the SDK's spans to the observability
    service this process serves, which stores them; on that service's own loop, or once it
    stops, it leaves them to the OTLP exporter (it would wait on itself, or on nobody)."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
    from sqlmodel import select

    from mesh.observability.models import SpanRow
    from mesh.runtime.telemetry import InProcessFirst

    class Otlp(SpanExporter):
        def __init__(self) -> None:
            self.exported: list = []

        def export(self, spans):
            self.exported.extend(spans)
            return SpanExportResult.SUCCESS

    class Kept(SpanExporter):
        spans: list = []

        def export(self, spans):
            self.spans.extend(spans)
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(Kept()))
    for name in ("first", "second", "third"):
        provider.get_tracer("test").start_span(name, attributes={
            "agentmesh.tenant_id": TENANT}).end()
    first, second, third = Kept.spans

    async def scenario() -> tuple[list, list]:
        (observability,), _ = await _served(tmp_path, "observability")
        otlp = Otlp()
        exporter = InProcessFirst(otlp, f"127.0.0.1:{observability.port}")
        try:
            await asyncio.to_thread(exporter.export, [first])   # the batch processor's thread
            exporter.export([second])                           # the receiver's own loop
            db = observability.runtime.database
            stored = await db.read(lambda s: list(s.exec(
                select(SpanRow.name).where(SpanRow.tenant_id == TENANT)).all()))
        finally:
            await observability.stop(0)
        await asyncio.to_thread(exporter.export, [third])       # stopped: over OTLP
        return stored, [span.name for span in otlp.exported]

    stored, over_otlp = asyncio.run(scenario())
    assert stored == ["first"]
    assert over_otlp == ["second", "third"]


def test_audit_events_are_handed_to_the_audit_trail_of_this_process_as_over_grpc(tmp_path):
    """The audit forwarder (mesh.runtime.audit.Forwarder) gives its events as dicts to the
    observability service this process serves on its loop, which stores what IngestAuditEvents
    stores for the same events (AGENTMESH_LOCAL_CALLS=false)."""
    from sqlmodel import select

    from mesh.observability.models import AuditRow
    from mesh.runtime.audit import Forwarder

    def event(n: int) -> dict:
        return {"id": str(uuid.uuid4()), "tenant_id": TENANT, "actor": "user-1",
                "api_key_id": "", "service": "agents", "action": "update",
                "resource_type": "agent", "resource_id": f"agent-{n}", "correlation_id": "c",
                "details": {"fields": ["name"], "n": n}, "before": {"name": "a", "v": 1},
                "after": {"name": "b", "v": 2}, "created_at": "2026-12-07T10:00:00.123456"}

    async def scenario() -> tuple[list, list, bool]:
        running, near, far = await _both(tmp_path, "observability")
        (observability,) = running
        took = near.receiver("observability", "audit") is not None
        stored = []
        try:
            for peers, n in ((near, 1), (far, 2)):
                sent = event(n)
                forwarder = Forwarder.__new__(Forwarder)
                forwarder.peers = peers
                await forwarder._send([sent])
                rows = await observability.runtime.database.read(lambda s: list(s.exec(
                    select(AuditRow).where(AuditRow.id == sent["id"])).all()))
                stored.append([{k: v for k, v in r.model_dump().items() if k != "id"}
                               for r in rows])
        finally:
            await _stop(running, near, far)
        return stored, far.receiver("observability", "audit"), took

    (near_rows, far_rows), far_takes, near_takes = asyncio.run(scenario())
    assert near_takes and far_takes is None
    assert len(near_rows) == len(far_rows) == 1
    near_row, far_row = near_rows[0], far_rows[0]
    assert near_row.pop("resource_id") == "agent-1" and far_row.pop("resource_id") == "agent-2"
    assert near_row.pop("details") == {"fields": ["name"], "n": 1}
    assert far_row.pop("details") == {"fields": ["name"], "n": 2}  # a Struct's 2.0 equals 2
    assert near_row == far_row
    assert near_row["after"] == {"name": "b", "v": 2} and near_row["tenant_id"] == TENANT
