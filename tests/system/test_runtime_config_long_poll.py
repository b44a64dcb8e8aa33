"""GetRuntimeConfig is a long poll (mesh/runtime/watch.py): a call that knows the current
revision is held until a change commits in the system service (a config update, a flag, a cache
clear: answered at once) or its wait ends; while held, the calling process counts as running;
and a process's poller (mesh.runtime.live) makes one call per hold while nothing changes and
applies a change at once."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from google.protobuf import struct_pb2

from agentmesh.system.v1 import system_pb2 as pb
from agentmesh.system.v1 import system_pb2_grpc as pb_grpc
from mesh.runtime import live, logs
from mesh.runtime.metrics import REQUESTS
from mesh.runtime.peers import Peers
from mesh.system import health
from mesh.system.service import DEFINITION
from tests.harness import Identity, ServiceHarness

ADMIN = Identity()


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    # Another process's changes are looked for every 30 s only: a held call that answers
    # sooner was answered by a commit of the system service itself.
    with ServiceHarness(DEFINITION, tmp_path_factory.mktemp("system"), database_url="",
                        live_poll_seconds=30) as harness:
        yield harness


def _stub(system) -> pb_grpc.SystemServiceStub:
    return system.stub(pb_grpc.SystemServiceStub)


def _report(pid: int = 7) -> pb.ServiceReport:
    return pb.ServiceReport(name="agents", pid=pid, host="long-poll-test", version="1")


def _held(system, revision: str, wait: int = 20, pid: int = 7):
    return _stub(system).GetRuntimeConfig.future(pb.GetRuntimeConfigRequest(
        known_revision=revision, wait_seconds=wait, services=[_report(pid)]), timeout=wait + 10)


def _revision(system) -> str:
    return _stub(system).GetRuntimeConfig(pb.GetRuntimeConfigRequest()).revision


@pytest.mark.parametrize("change", ["flag", "config", "cache"])
def test_a_held_call_answers_at_once_when_the_system_service_commits_a_change(system, change):
    revision = _revision(system)
    held = _held(system, revision)
    time.sleep(1.0)
    assert not held.done()
    began = time.monotonic()
    stub = _stub(system)
    if change == "flag":
        stub.UpdateFeatureFlag(pb.UpdateFeatureFlagRequest(
            flag_name=f"long_poll_{int(time.time() * 1000)}", allow_missing=True,
            feature_flag=pb.FeatureFlag(enabled=True)), metadata=ADMIN.metadata())
    elif change == "config":
        document = struct_pb2.Struct()
        document.update({"retention": {"days": 5}})
        stub.UpdateSystemConfig(pb.UpdateSystemConfigRequest(
            config=pb.SystemConfig(config=document)), metadata=ADMIN.metadata())
    else:
        stub.ClearCache(pb.ClearCacheRequest(), metadata=ADMIN.metadata())
    reply = held.result(10)
    assert time.monotonic() - began < 1.0
    assert not reply.unchanged and reply.revision != revision


def test_a_held_call_answers_unchanged_when_its_wait_ends(system):
    revision = _revision(system)
    began = time.monotonic()
    reply = _held(system, revision, wait=1).result(10)
    assert reply.unchanged and reply.revision == revision
    assert 0.9 < time.monotonic() - began < 3


def test_a_process_whose_call_is_held_counts_as_running(system, monkeypatch):
    monkeypatch.setattr(health, "_REPORT_TTL", 0.5)
    instances = system.running.runtime.state.instances
    pids = lambda: {r.pid for r in instances.of("agents")}  # noqa: E731
    held = _held(system, _revision(system), wait=3, pid=4242)
    time.sleep(1.5)  # past the TTL since the call came: alive because it is held
    assert 4242 in pids()
    held.result(10)
    assert 4242 in pids()  # seen when its call ended
    time.sleep(1.0)  # no call since: gone after the TTL
    assert 4242 not in pids()


def test_the_poller_makes_one_call_per_hold_and_applies_a_change_at_once(system):
    calls = REQUESTS.labels("system", "GetRuntimeConfig", "OK")
    settings = system.settings.model_copy(
        update={"peers": f"system=127.0.0.1:{system.running.port}", "live_poll_seconds": 0.2})
    peers = Peers(settings)

    async def scenario():
        poller = live.Live(settings, peers, lambda revision: [_report(99)])
        poller.start()
        try:
            for _ in range(100):
                if poller.revision:
                    break
                await asyncio.sleep(0.05)
            before = calls._value.get()
            await asyncio.sleep(2)  # ten intervals of 0.2 s: the call is held
            idle_calls = calls._value.get() - before
            document = struct_pb2.Struct()
            document.update({"logging": {"level": "INFO", "services": {"agents": "DEBUG"}}})
            began = time.monotonic()
            await asyncio.to_thread(_stub(system).UpdateSystemConfig, pb.UpdateSystemConfigRequest(
                config=pb.SystemConfig(config=document)), metadata=ADMIN.metadata())
            while logs.level_for("agents") != logging.DEBUG and time.monotonic() - began < 5:
                await asyncio.sleep(0.01)
            return idle_calls, time.monotonic() - began
        finally:
            await poller.stop()
            await peers.close()

    try:
        idle_calls, applied = asyncio.run(scenario())
    finally:
        logs.apply_levels("INFO")
    assert idle_calls == 0
    assert applied < 1.0, applied


def test_a_process_that_goes_away_stops_counting_as_held(system, monkeypatch):
    """Its call is cancelled with its connection: the hold ends (and the TTL runs from then)."""
    monkeypatch.setattr(health, "_REPORT_TTL", 0.5)
    instances = system.running.runtime.state.instances
    held = _held(system, _revision(system), wait=30, pid=4343)
    time.sleep(0.5)
    assert ("agents", "long-poll-test", 4343) in instances.held
    held.cancel()
    time.sleep(0.5)
    assert ("agents", "long-poll-test", 4343) not in instances.held
    time.sleep(0.6)
    assert 4343 not in {r.pid for r in instances.of("agents")}
