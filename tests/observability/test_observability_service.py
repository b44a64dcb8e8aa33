"""The observability service alone: OTLP spans in, traces out; retention."""

from __future__ import annotations

import asyncio
import secrets
import time
from datetime import timedelta

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as otlp
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as otlp_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from agentmesh.observability.v1 import observability_pb2 as pb
from agentmesh.observability.v1 import observability_pb2_grpc as pb_grpc
from mesh.observability.retention import prune
from mesh.observability.service import DEFINITION
from mesh.runtime.tables import utcnow
from tests.harness import Identity, ServiceHarness, error_reason, harness_fixture


service = harness_fixture(DEFINITION)


def _span(trace_id: bytes, span_id: bytes, parent: bytes, name: str, tenant: str,
          error: bool = False) -> trace_pb2.Span:
    now = time.time_ns()
    return trace_pb2.Span(
        trace_id=trace_id, span_id=span_id, parent_span_id=parent, name=name,
        kind=trace_pb2.Span.SPAN_KIND_SERVER, start_time_unix_nano=now,
        end_time_unix_nano=now + 2_000_000,
        status=trace_pb2.Status(code=trace_pb2.Status.STATUS_CODE_ERROR if error
                                else trace_pb2.Status.STATUS_CODE_OK),
        attributes=[common_pb2.KeyValue(key="agentmesh.tenant_id",
                                        value=common_pb2.AnyValue(string_value=tenant))])


def _export(service, spans, service_name="agents", token: str | None = None):
    """Exports as the platform's own exporters do: with the internal token (`token` overrides
    it; "" sends none)."""
    from mesh.runtime import internal

    resource_spans = trace_pb2.ResourceSpans(scope_spans=[trace_pb2.ScopeSpans(spans=spans)])
    resource_spans.resource.attributes.add(key="service.name").value.string_value = service_name
    export = otlp_grpc.TraceServiceStub(service.raw_channel).Export
    token = internal.token(service.settings) if token is None else token
    export(otlp.ExportTraceServiceRequest(resource_spans=[resource_spans]),
           metadata=((internal.HEADER, token),) if token else ())


def test_exported_spans_become_a_tenant_scoped_trace(service):
    me, other = Identity(), Identity()
    trace_id, root, child = secrets.token_bytes(16), secrets.token_bytes(8), secrets.token_bytes(8)
    _export(service, [_span(trace_id, root, b"", "ingress", me.tenant_id),
                      _span(trace_id, child, root, "GetAgent", me.tenant_id, error=True)])
    stub = service.stub(pb_grpc.ObservabilityServiceStub)
    trace = stub.GetTrace(pb.GetTraceRequest(trace_id=trace_id.hex()), metadata=me.metadata())
    assert (trace.span_count, trace.root_span_name, trace.status) == (2, "ingress",
                                                                     pb.SPAN_STATUS_ERROR)
    failed = stub.ListTraces(pb.ListTracesRequest(status=pb.SPAN_STATUS_ERROR),
                             metadata=me.metadata())
    assert [t.trace_id for t in failed.items] == [trace_id.hex()]
    with pytest.raises(grpc.RpcError) as caught:
        stub.GetTrace(pb.GetTraceRequest(trace_id=trace_id.hex()), metadata=other.metadata())
    assert error_reason(caught.value) == "TRACE_NOT_FOUND"
    assert stub.ListTraces(pb.ListTracesRequest(), metadata=other.metadata()).total == 0


def _stored_spans(service, trace_id: bytes) -> int:
    from sqlmodel import func, select

    from mesh.observability.models import SpanRow

    database = service.running.runtime.database
    return service._run(database.read(lambda s: s.exec(
        select(func.count()).select_from(SpanRow).where(
            SpanRow.trace_id == trace_id.hex())).one()))


@pytest.mark.parametrize("token", ["", "not-the-platform-token"])
def test_an_export_without_the_internal_token_is_refused_and_stores_nothing(service, token):
    """Anything that reaches the receiver's port but is not the platform's own exporter (no
    token, a wrong one) is UNAUTHENTICATED, even with a span naming a tenant: nothing is
    filed under that tenant."""
    victim = Identity()
    trace_id = secrets.token_bytes(16)
    with pytest.raises(grpc.RpcError) as caught:
        _export(service, [_span(trace_id, secrets.token_bytes(8), b"", "forged",
                                victim.tenant_id)], token=token)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert _stored_spans(service, trace_id) == 0
    stub = service.stub(pb_grpc.ObservabilityServiceStub)
    assert stub.ListTraces(pb.ListTracesRequest(), metadata=victim.metadata()).total == 0


def test_a_trace_id_shared_with_another_tenant_shows_only_the_callers_spans(service):
    """A trace id is whatever a client's `traceparent` says, so two tenants' spans can share
    one: each tenant reads only its own."""
    me, other = Identity(), Identity()
    trace_id = secrets.token_bytes(16)
    _export(service, [_span(trace_id, secrets.token_bytes(8), b"", "mine", me.tenant_id),
                      _span(trace_id, secrets.token_bytes(8), b"", "theirs", other.tenant_id)])
    stub = service.stub(pb_grpc.ObservabilityServiceStub)
    for who, name in ((me, "mine"), (other, "theirs")):
        trace = stub.GetTrace(pb.GetTraceRequest(trace_id=trace_id.hex()), metadata=who.metadata())
        assert [s.name for s in trace.spans] == [name]
        listed = stub.ListTraces(pb.ListTracesRequest(), metadata=who.metadata())
        assert [(t.trace_id, t.span_count) for t in listed.items] == [(trace_id.hex(), 1)]


def test_retention_prunes_old_rows(service):
    me = Identity()
    _export(service, [_span(secrets.token_bytes(16), secrets.token_bytes(8), b"", "old",
                            me.tenant_id)])
    database = service.running.runtime.database
    removed = asyncio.run_coroutine_threadsafe(
        database.write(lambda s: prune(s, utcnow() + timedelta(seconds=1))), service.loop).result()
    assert removed >= 1
    stub = service.stub(pb_grpc.ObservabilityServiceStub)
    assert stub.ListTraces(pb.ListTracesRequest(), metadata=me.metadata()).total == 0


def test_alert_notifications_wait_in_the_outbox_through_a_restart(tmp_path):
    """A rule's change queues its notification in the same transaction; with the receiver down
    and the service stopped before any attempt succeeded, the notification is still sent, signed
    with the rule's secret, by the sender of the restarted service. A notification of a rule
    deleted meanwhile ends failed without an attempt."""
    from sqlmodel import select

    from mesh.observability.alerts import FIRING, _targets, queue_notifications
    from mesh.observability.models import AlertNotificationRow, AlertRow
    from mesh.runtime.outbox import Outbox
    from mesh.runtime.webhooks import SIGNATURE_HEADER, WebhookSender, verify
    from tests.fakes.http_server import LocalHTTPServer

    harness = ServiceHarness(DEFINITION, tmp_path, egress_allow="127.0.0.1")
    receiver = LocalHTTPServer()
    port = receiver.port
    receiver.close()  # down for now
    try:
        me = Identity()
        made = harness.stub(pb_grpc.ObservabilityServiceStub).CreateAlert(
            pb.CreateAlertRequest(alert=pb.Alert(
                name="errors", condition=pb.AlertCondition(
                    metric="call_errors", threshold=1,
                    operator=pb.ComparisonOperator.COMPARISON_OPERATOR_GREATER_THAN),
                channels=[f"webhook:http://127.0.0.1:{port}/alerts"])),
            metadata=me.metadata())
        evaluator = harness.running.runtime.state.evaluator
        harness._run(evaluator.outbox.close())  # the service stops before any delivery
        database = harness.running.runtime.database

        def change(session):
            row = session.get(AlertRow, made.id)
            return queue_notifications(session, row, FIRING, 3.0, utcnow())

        assert harness._run(database.write(change)) == 1
        receiver = LocalHTTPServer(port=port)
        restarted = Outbox(database, AlertNotificationRow, _targets,
                           sender=WebhookSender(egress=evaluator.outbox.sender.egress))

        async def start():
            restarted.start()

        harness._run(start())
        deadline = time.monotonic() + 10
        while not receiver.requests and time.monotonic() < deadline:
            time.sleep(0.05)
        (hit,) = receiver.requests
        assert hit["path"] == "/alerts" and hit["body"]["event"] == "alert.firing"
        assert hit["body"]["alert"]["id"] == made.id and hit["body"]["value"] == 3.0
        assert verify(made.signing_secret, hit["headers"][SIGNATURE_HEADER], hit["raw"])
        from standardwebhooks import Webhook
        assert Webhook(made.signing_secret).verify(hit["raw"], hit["headers"])["value"] == 3.0

        def gone(session):
            row = session.get(AlertRow, made.id)
            queue_notifications(session, row, FIRING, 4.0, utcnow())
            session.delete(row)

        harness._run(database.write(gone))
        restarted.wake()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            rows = harness._run(database.read(lambda s: s.exec(
                select(AlertNotificationRow).order_by(AlertNotificationRow.created_at)).all()))
            if all(r.status != "pending" for r in rows):
                break
            time.sleep(0.05)
        assert [(r.status, r.attempts) for r in rows] == [("delivered", 1), ("failed", 0)]
        assert rows[1].error == "the alert was deleted" and rows[1].payload == ""
        assert len(receiver.requests) == 1
        harness._run(restarted.close())
    finally:
        receiver.close()
        harness.close()


@pytest.mark.parametrize("token", ["", "not-the-platform-token"])
def test_an_internal_rpc_without_the_internal_token_is_refused(service, token):
    """Internal RPCs (no REST route) trust the tenant their request names, so the runtime lets
    only the platform's own services call them: IngestLogs from anything else that reaches the
    port is UNAUTHENTICATED and files no line under the tenant it names."""
    from mesh.runtime import internal

    victim = Identity()
    entry = pb.LogEntry(tenant_id=victim.tenant_id, service="agents", level=pb.LOG_LEVEL_ERROR,
                        message=f"forged-{secrets.token_hex(4)}")
    ingest = pb_grpc.ObservabilityServiceStub(service.raw_channel).IngestLogs
    with pytest.raises(grpc.RpcError) as caught:
        ingest(pb.IngestLogsRequest(entries=[entry]),
               metadata=((internal.HEADER, token),) if token else ())
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_reason(caught.value) == "INTERNAL_TOKEN_REQUIRED"
    stub = service.stub(pb_grpc.ObservabilityServiceStub)
    assert stub.IngestLogs(pb.IngestLogsRequest(entries=[entry])).stored == 1


def test_health_names_each_component_with_what_it_took_in(service):
    """GetHealth: the database, the OTLP receiver (spans taken and refused), the log ingest,
    retention and the alert evaluator, each healthy while the service runs."""
    stub = service.stub(pb_grpc.ObservabilityServiceStub)

    def components():
        report = stub.GetHealth(pb.GetHealthRequest(), metadata=Identity().metadata())
        return report, {c.name: c for c in report.services}

    before, found = components()
    assert before.status == "healthy" and before.service == "observability"
    assert list(found) == ["database", "otlp-receiver", "log-ingest", "retention",
                           "alert-evaluator"]
    assert all(c.status == "healthy" for c in found.values())
    received = found["otlp-receiver"].details["spans_received"]
    refused = found["otlp-receiver"].details["exports_refused"]
    me = Identity()
    _export(service, [_span(secrets.token_bytes(16), secrets.token_bytes(8), b"", "x",
                            me.tenant_id)])
    with pytest.raises(grpc.RpcError):
        _export(service, [_span(secrets.token_bytes(16), secrets.token_bytes(8), b"", "x",
                                me.tenant_id)], token="")
    _, after = components()
    assert after["otlp-receiver"].details["spans_received"] == received + 1
    assert after["otlp-receiver"].details["exports_refused"] == refused + 1
    assert after["otlp-receiver"].details["last_export_at"]



def _rule(stub, me, name: str, **extra) -> pb.Alert:
    return stub.CreateAlert(pb.CreateAlertRequest(alert=pb.Alert(
        name=name, condition=pb.AlertCondition(
            metric="call_errors", threshold=1,
            operator=pb.ComparisonOperator.COMPARISON_OPERATOR_GREATER_THAN), **extra)),
        metadata=me.metadata())


def test_an_alert_rule_is_read_changed_silenced_and_deleted(service):
    """GetAlert by id or name; UpdateAlert changes only what it names and checks it as create
    does; SilenceAlert holds notifications back for a while; DeleteAlert; another tenant sees
    none of it."""
    from google.protobuf import field_mask_pb2
    from google.protobuf.duration_pb2 import Duration

    stub = service.stub(pb_grpc.ObservabilityServiceStub)
    me, other = Identity(), Identity()
    made = _rule(stub, me, "errors", description="too many failed calls")
    assert stub.GetAlert(pb.GetAlertRequest(alert_id="errors"), metadata=me.metadata()).id == made.id
    got = stub.GetAlert(pb.GetAlertRequest(alert_id=made.id), metadata=me.metadata())
    assert got.name == "errors" and not got.signing_secret  # the secret is shown once

    changed = stub.UpdateAlert(pb.UpdateAlertRequest(
        alert_id=made.id, alert=pb.Alert(condition=pb.AlertCondition(
            metric="call_errors", threshold=5,
            operator=pb.ComparisonOperator.COMPARISON_OPERATOR_GREATER_THAN),
            description="ignored: not in the mask"),
        update_mask=field_mask_pb2.FieldMask(paths=["condition"])), metadata=me.metadata())
    assert changed.condition.threshold == 5 and changed.description == "too many failed calls"
    disabled = stub.UpdateAlert(pb.UpdateAlertRequest(alert_id="errors", alert=pb.Alert(
        enabled=False)), metadata=me.metadata())
    assert disabled.status == pb.ALERT_STATUS_DISABLED and disabled.condition.threshold == 5
    enabled = stub.UpdateAlert(pb.UpdateAlertRequest(alert_id="errors", alert=pb.Alert(
        enabled=True)), metadata=me.metadata())
    assert enabled.status == pb.ALERT_STATUS_OK

    with pytest.raises(grpc.RpcError) as bad:
        stub.UpdateAlert(pb.UpdateAlertRequest(alert_id="errors", alert=pb.Alert(
            condition=pb.AlertCondition(metric="no_such_metric"))), metadata=me.metadata())
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as bad:
        stub.UpdateAlert(pb.UpdateAlertRequest(alert_id="errors", alert=pb.Alert(),
                                               update_mask=field_mask_pb2.FieldMask(
                                                   paths=["status"])), metadata=me.metadata())
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    _rule(stub, me, "taken")
    with pytest.raises(grpc.RpcError) as taken:
        stub.UpdateAlert(pb.UpdateAlertRequest(alert_id="errors", alert=pb.Alert(name="taken")),
                         metadata=me.metadata())
    assert taken.value.code() == grpc.StatusCode.ALREADY_EXISTS

    before = time.time()
    quiet = stub.SilenceAlert(pb.SilenceAlertRequest(alert_id="errors",
                                                     duration=Duration(seconds=3600)),
                              metadata=me.metadata())
    assert before + 3590 < quiet.silenced_until.ToSeconds() < time.time() + 3610
    with pytest.raises(grpc.RpcError) as bad:
        stub.SilenceAlert(pb.SilenceAlertRequest(alert_id="errors", duration=Duration(seconds=5)),
                          metadata=me.metadata())
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    loud = stub.UpdateAlert(pb.UpdateAlertRequest(
        alert_id="errors", alert=pb.Alert(),
        update_mask=field_mask_pb2.FieldMask(paths=["silenced_until"])), metadata=me.metadata())
    assert not loud.HasField("silenced_until")

    with pytest.raises(grpc.RpcError) as hidden:
        stub.GetAlert(pb.GetAlertRequest(alert_id=made.id), metadata=other.metadata())
    assert hidden.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as hidden:
        stub.DeleteAlert(pb.DeleteAlertRequest(alert_id=made.id), metadata=other.metadata())
    assert hidden.value.code() == grpc.StatusCode.NOT_FOUND
    assert stub.DeleteAlert(pb.DeleteAlertRequest(alert_id=made.id),
                            metadata=me.metadata()).success
    with pytest.raises(grpc.RpcError) as gone:
        stub.GetAlert(pb.GetAlertRequest(alert_id=made.id), metadata=me.metadata())
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_silenced_rule_records_its_firing_but_queues_no_notification(tmp_path):
    """Two rules whose condition holds fire at one evaluation: both record their `alert.firing`
    event, only the one not silenced queues a notification."""
    from sqlmodel import select

    from mesh.observability.models import AlertNotificationRow, AlertRow, EventRow

    harness = ServiceHarness(DEFINITION, tmp_path, egress_allow="127.0.0.1")
    try:
        stub = harness.stub(pb_grpc.ObservabilityServiceStub)
        me = Identity()
        made = {}
        for name in ("loud", "quiet"):
            made[name] = stub.CreateAlert(pb.CreateAlertRequest(alert=pb.Alert(
                name=name, channels=["webhook:http://127.0.0.1:9/alerts"],
                condition=pb.AlertCondition(
                    metric="error_events", threshold=-1,
                    operator=pb.ComparisonOperator.COMPARISON_OPERATOR_GREATER_THAN))),
                metadata=me.metadata())
        stub.SilenceAlert(pb.SilenceAlertRequest(alert_id="quiet", duration={"seconds": 600}),
                          metadata=me.metadata())
        evaluator = harness.running.runtime.state.evaluator
        database = harness.running.runtime.database
        for name in ("loud", "quiet"):
            row = harness._run(database.read(lambda s, i=made[name].id: s.get(AlertRow, i)))
            harness._run(evaluator.evaluate(row))

        def read(session):
            fired = {e.attributes["alert"] for e in session.exec(select(EventRow).where(
                EventRow.event_type == "alert.firing")).all()}
            queued = [n.alert_id for n in session.exec(select(AlertNotificationRow)).all()]
            return fired, queued
        fired, queued = harness._run(database.read(read))
        assert fired == {"loud", "quiet"}
        assert queued == [made["loud"].id]
        listed = stub.ListAlerts(pb.ListAlertsRequest(), metadata=me.metadata())
        assert {a.name: a.status for a in listed.items} == {
            "loud": pb.ALERT_STATUS_FIRING, "quiet": pb.ALERT_STATUS_FIRING}
    finally:
        harness.close()
