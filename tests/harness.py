"""One service in-process on a free port, for fast behaviour tests that assert gRPC codes and
error reasons without the gateway (tests/<service>/). The service runs the real runtime
(`mesh.runtime.server.start`: migrations, wrapping, health) on its own event loop in a thread;
tests call it with a plain synchronous gRPC channel, as another service would."""

from __future__ import annotations

import asyncio
import collections
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from mesh.runtime import internal
from mesh.runtime.context import (API_KEY_HEADER, CORRELATION_HEADER, SCOPES_HEADER,
                                  TENANT_HEADER, USER_HEADER)
from mesh.runtime.errors import reason_of
from mesh.runtime.server import RunningService, start
from mesh.runtime.service import ServiceDefinition
from mesh.runtime.settings import Settings


@dataclass
class Identity:
    tenant_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    user_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    scopes: str = "*"
    api_key_id: str = ""  # as identity's ext_authz sets it for a call with an API key

    def metadata(self) -> tuple[tuple[str, str], ...]:
        key = ((API_KEY_HEADER, self.api_key_id),) if self.api_key_id else ()
        return ((TENANT_HEADER, self.tenant_id), (USER_HEADER, self.user_id),
                (SCOPES_HEADER, self.scopes), (CORRELATION_HEADER, uuid.uuid4().hex), *key)


class _WithToken(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    def __init__(self, token: str) -> None:
        self.token = token

    def _details(self, details):
        metadata = [*(details.metadata or ()), (internal.HEADER, self.token)]
        return _Details(details.method, details.timeout, metadata, details.credentials,
                        details.wait_for_ready, details.compression)

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)


class _Details(collections.namedtuple("_Details", ("method", "timeout", "metadata", "credentials",
                                                     "wait_for_ready", "compression")),
               grpc.ClientCallDetails):
    pass


class ServiceHarness:
    def __init__(self, definition: ServiceDefinition, data_dir: Path, **settings) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.settings = Settings(data_dir=data_dir, **settings)
        self.running: RunningService = self._run(start(definition, self.settings, port=0))
        # Calls come "as another service would": with the platform's internal token, which the
        # internal RPCs require (`raw_channel` has none).
        self.raw_channel = grpc.insecure_channel(f"127.0.0.1:{self.running.port}")
        self.channel = grpc.intercept_channel(self.raw_channel,
                                              _WithToken(internal.token(self.settings)))

    def _run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(60)

    def stub(self, stub_class):
        return stub_class(self.channel)

    def close(self) -> None:
        self.raw_channel.close()
        self._run(self.running.stop(1))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def __enter__(self) -> "ServiceHarness":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def harness_fixture(definition: ServiceDefinition, *, scope: str = "module", **settings):
    """A fixture that runs `definition` in-process for the scope, in a data directory of its
    own, with these settings (a harness whose settings depend on other fixtures is built with
    `with ServiceHarness(...) as harness: yield harness`)."""
    @pytest.fixture(scope=scope)
    def harness(tmp_path_factory):
        with ServiceHarness(definition, tmp_path_factory.mktemp(definition.name),
                            **settings) as running:
            yield running
    harness.__doc__ = f"The {definition.name} service in-process, one per {scope}."
    return harness


def rpc_error(call, code: grpc.StatusCode, reason: str | None = None) -> grpc.RpcError:
    """The error `call()` fails with, checked: its code and, when given, its reason."""
    with pytest.raises(grpc.RpcError) as caught:
        call()
    assert caught.value.code() == code, caught.value.details()
    if reason:
        assert error_reason(caught.value) == reason
    return caught.value


def error_reason(error: grpc.RpcError) -> str:
    """The `ErrorInfo.reason` of a failed call (what a client should branch on)."""
    return reason_of(error)


def field_violations(error: grpc.RpcError) -> list[str]:
    status = rpc_status.from_call(error)
    for detail in status.details if status else ():
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            return [v.field for v in bad.field_violations]
    return []
