"""Decision webhooks: delivered to a real local HTTP server, signed, retried after a failure,
without holding up the decision."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import pytest

from agentmesh.governance.v1 import governance_pb2 as pb
from agentmesh.governance.v1 import governance_pb2_grpc as pb_grpc
from mesh.governance.service import DEFINITION
from mesh.runtime.egress import EgressPolicy
from standardwebhooks import Webhook, WebhookVerificationError

from mesh.runtime.webhooks import (SIGNATURE_HEADER, WebhookSender, new_secret, signed_headers,
                                   signing_key, standard_secret, verify)
from tests.harness import Identity, ServiceHarness, error_reason

LOCAL = EgressPolicy.parse("127.0.0.1")  # the receivers here listen on 127.0.0.1


class Receiver:
    """A small HTTP server that fails the first `failures` requests with 503."""

    def __init__(self, failures: int = 0, delay: float = 0.0) -> None:
        self.failures = failures
        self.delay = delay
        self.received: list[tuple[dict, bytes]] = []
        self.attempts = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(receiver.delay)
                receiver.attempts += 1
                if receiver.attempts <= receiver.failures:
                    self.send_response(503)
                    self.end_headers()
                    return
                receiver.received.append((dict(self.headers), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def wait(self, count: int = 1, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.received) >= count, f"got {len(self.received)} deliveries"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver(failures=2)
    yield server
    server.close()


def test_sender_signs_and_retries_with_backoff(receiver):
    results = []

    async def run():
        sender = WebhookSender(egress=LOCAL, base_delay=0.05)
        delivery = sender.send(receiver.url, "s3cret", "test.event", {"hello": "world"})
        assert delivery is not None and sender.pending == 1  # scheduled, not yet sent
        await sender.close(drain_seconds=10)
        results.append(delivery)  # filled in as the attempts went

    asyncio.run(run())
    receiver.wait()
    headers, body = receiver.received[0]
    assert json.loads(body) == {"hello": "world"}
    assert verify("s3cret", headers[SIGNATURE_HEADER], body)
    assert not verify("wrong", headers[SIGNATURE_HEADER], body)
    assert not verify("s3cret", headers[SIGNATURE_HEADER], body + b" ")
    # Standard Webhooks, checked by its own library: a secret that is not `whsec_<base64>`
    # signs with its bytes, which the library takes as `whsec_` + their base64
    assert Webhook(standard_secret("s3cret")).verify(body, headers) == {"hello": "world"}
    with pytest.raises(WebhookVerificationError):
        Webhook(standard_secret("wrong")).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(standard_secret("s3cret")).verify(body + b" ", headers)
    assert headers["webhook-id"] == headers["X-AgentMesh-Delivery"]  # the same on each retry
    assert receiver.attempts == 3 and results[0].delivered and results[0].attempts == 3


def test_secrets_are_in_the_standard_webhooks_form():
    secret = new_secret()
    assert secret.startswith("whsec_") and len(signing_key(secret)) == 32
    assert standard_secret(secret) == secret  # what the user is given is what a library takes
    assert signing_key("whsec_not-base64_at-all") == b"whsec_not-base64_at-all"
    unpadded = "whsec_" + base64.b64encode(b"0123456789abcdefghijk").decode().rstrip("=")
    assert signing_key(unpadded) == b"0123456789abcdefghijk"
    body, headers = b'{"a":1}', signed_headers(unpadded, "msg_1", "e", b'{"a":1}')
    assert Webhook(unpadded).verify(body, headers) == {"a": 1}


def test_sender_gives_up_on_a_refusal():
    results = []

    async def run():
        sender = WebhookSender(egress=LOCAL, base_delay=0.01)
        results.append(sender.send("http://127.0.0.1:9/unreachable", "k", "e", {}))
        await sender.close(drain_seconds=10)

    asyncio.run(run())
    assert not results[0].delivered and results[0].attempts == 5


def test_decisions_are_sent_to_the_tenant_webhook_without_waiting(tmp_path):
    slow = Receiver(failures=1, delay=0.5)
    harness = ServiceHarness(DEFINITION, tmp_path, egress_allow="127.0.0.1")
    try:
        stub = harness.stub(pb_grpc.GovernanceServiceStub)
        me = Identity()
        hook = stub.CreateWebhook(pb.CreateWebhookRequest(webhook=pb.Webhook(url=slow.url)),
                                  metadata=me.metadata())
        assert hook.secret.startswith("whsec_")
        listed = stub.ListWebhooks(pb.ListWebhooksRequest(), metadata=me.metadata())
        assert listed.total == 1 and listed.items[0].secret == ""  # shown once only
        started = time.monotonic()
        decision = stub.Decide(pb.DecideRequest(request=pb.DecisionRequest(
            principal_type="Agent", principal_id="triage", action="call_tool",
            resource_type="Tool", resource_id="search")), metadata=me.metadata())
        assert time.monotonic() - started < 0.4  # the slow receiver does not hold it up
        slow.wait(timeout=15)
        headers, body = slow.received[0]
        assert verify(hook.secret, headers[SIGNATURE_HEADER], body)
        event = Webhook(hook.secret).verify(body, headers)  # the secret as it was given
        assert event["event"] == "governance.decision" and event["id"] == decision.id
        assert event["allowed"] is True and event["correlation_id"] == decision.correlation_id
        assert slow.attempts == 2
    finally:
        harness.close()
        slow.close()


def test_the_sender_never_reaches_an_address_the_guard_refuses(receiver):
    """A delivery to an internal address fails at once (no retry) and nothing is sent."""
    results = []

    async def run():
        sender = WebhookSender(egress=EgressPolicy.parse(""), base_delay=0.01)
        results.append(sender.send(receiver.url, "k", "e", {}))
        await sender.close(drain_seconds=10)

    asyncio.run(run())
    assert not results[0].delivered and results[0].attempts == 1
    assert results[0].error.startswith("EGRESS_DENIED")
    assert receiver.attempts == 0


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/hook", "http://169.254.169.254/latest",
                                 "http://10.0.0.1/hook", "http://localhost/hook"])
def test_a_webhook_to_an_internal_address_is_refused_when_registered(tmp_path, url):
    harness = ServiceHarness(DEFINITION, tmp_path)  # the default, empty allow-list
    try:
        stub = harness.stub(pb_grpc.GovernanceServiceStub)
        with pytest.raises(grpc.RpcError) as refused:
            stub.CreateWebhook(pb.CreateWebhookRequest(webhook=pb.Webhook(url=url)),
                               metadata=Identity().metadata())
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_reason(refused.value) == "EGRESS_DENIED"
    finally:
        harness.close()
