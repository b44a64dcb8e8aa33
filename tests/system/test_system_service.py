"""The system service in-process: runtime configuration (validated, versioned, audited, applied
by a running process's poller), feature flags, cache clears, restart requests, metrics, and the
backup/restore of SQLite databases while they are written."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time

import grpc
import pytest
from google.protobuf import struct_pb2

from agentmesh.system.v1 import system_pb2 as pb
from agentmesh.system.v1 import system_pb2_grpc as pb_grpc
from mesh.runtime import caches, live, logs, placeholders
from mesh.runtime.peers import Peers
from mesh.system import backup, restart
from mesh.system.sampler import p95
from mesh.system.service import DEFINITION
from tests.harness import Identity, ServiceHarness, error_reason, field_violations

ADMIN = Identity()


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    control = tmp_path_factory.mktemp("control")
    restart.prepare(control, [["agents", "system", "tools"]])
    harness = ServiceHarness(DEFINITION, tmp_path_factory.mktemp("system"),
                             secrets_kek="c2VjcmV0", supervisor_control_dir=str(control),
                             database_url="")
    harness.control = control
    yield harness
    harness.close()


def _stub(system):
    return system.stub(pb_grpc.SystemServiceStub)


def _config(**sections) -> pb.SystemConfig:
    document = struct_pb2.Struct()
    document.update(sections)
    return pb.SystemConfig(config=document)


def test_config_is_validated_versioned_and_hides_secrets(system):
    stub = _stub(system)
    current = stub.GetSystemConfig(pb.GetSystemConfigRequest(), metadata=ADMIN.metadata())
    shown = current.config["settings"]
    assert shown["secrets_kek"] == "***" and "c2VjcmV0" not in str(current)
    first = stub.UpdateSystemConfig(pb.UpdateSystemConfigRequest(
        config=_config(retention={"days": 3})), metadata=ADMIN.metadata())
    before = first.version
    assert before == current.version + 1 and first.config["retention"]["days"] == 3
    updated = stub.UpdateSystemConfig(pb.UpdateSystemConfigRequest(
        config=_config(logging={"level": "WARNING"}), expected_version=before),
        metadata=ADMIN.metadata())
    assert updated.version == before + 1 and updated.config["retention"]["days"] == 3 and updated.config["logging"]["level"] == "WARNING"
    assert updated.updated_by == ADMIN.user_id
    # Stale version: 409-style refusal.
    with pytest.raises(grpc.RpcError) as stale:
        stub.UpdateSystemConfig(pb.UpdateSystemConfigRequest(
            config=_config(logging={"level": "INFO"}), expected_version=before),
            metadata=ADMIN.metadata())
    assert stale.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    for bad, field in (({"logging": {"level": "LOUD"}}, "config.logging.level"),
                       ({"nonsense": {}}, "config.nonsense"),
                       ({"retention": {"days": -1}}, "config.retention.days"),
                       ({"logging": {"services": {"nope": "DEBUG"}}},
                        "config.logging.services.nope"),
                       ({"settings": {"secrets_kek": "x"}}, "config.settings")):
        with pytest.raises(grpc.RpcError) as refused:
            stub.UpdateSystemConfig(pb.UpdateSystemConfigRequest(config=_config(**bad)),
                                    metadata=ADMIN.metadata())
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, bad
        assert field in field_violations(refused.value), (bad, field_violations(refused.value))
    # Echoing what was read back (read-only section included) is fine.
    again = stub.GetSystemConfig(pb.GetSystemConfigRequest(), metadata=ADMIN.metadata())
    echoed = stub.UpdateSystemConfig(pb.UpdateSystemConfigRequest(config=pb.SystemConfig(
        config=again.config)), metadata=ADMIN.metadata())
    assert echoed.version == again.version + 1
    # A masked section absent from the body goes back to its default.
    reset = stub.UpdateSystemConfig(pb.UpdateSystemConfigRequest(
        config=_config(), update_mask={"paths": ["config.logging"]}), metadata=ADMIN.metadata())
    assert reset.config["logging"]["level"] == "INFO"


def test_a_running_process_applies_the_log_level_without_restart(system):
    stub = _stub(system)
    stub.UpdateSystemConfig(pb.UpdateSystemConfigRequest(
        config=_config(logging={"level": "INFO", "services": {"agents": "DEBUG"}})),
        metadata=ADMIN.metadata())
    peers = Peers(system.settings.model_copy(
        update={"peers": f"system=127.0.0.1:{system.running.port}"}))
    poller = live.Live(system.settings, peers, lambda revision: [pb.ServiceReport(
        name="agents", pid=1, host="test", config_revision=revision)])
    try:
        assert system._run(poller.poll()) is True
        assert logs.level_for("agents") == logging.DEBUG
        assert logs.level_for("tools") == logging.INFO
        assert logging.getLogger().isEnabledFor(logging.DEBUG)
        assert system._run(poller.poll()) is False  # nothing new: `unchanged`
        stub.UpdateSystemConfig(pb.UpdateSystemConfigRequest(
            config=_config(logging={"level": "ERROR"})), metadata=ADMIN.metadata())
        assert system._run(poller.poll()) is True  # the revision is read, not cached
        assert logs.level_for("agents") == logging.ERROR
    finally:
        system._run(peers.close())
        logs.apply_levels("INFO")


def test_feature_flags(system):
    stub = _stub(system)
    with pytest.raises(grpc.RpcError) as missing:
        stub.UpdateFeatureFlag(pb.UpdateFeatureFlagRequest(
            flag_name="new_editor", feature_flag=pb.FeatureFlag(enabled=True)),
            metadata=ADMIN.metadata())
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    made = stub.UpdateFeatureFlag(pb.UpdateFeatureFlagRequest(
        flag_name="new_editor", allow_missing=True,
        feature_flag=pb.FeatureFlag(description="the new editor", tenant_ids=["t-1"])),
        metadata=ADMIN.metadata())
    assert made.name == "new_editor" and not made.enabled and made.rollout_percentage == 100
    assert live.flag_on(made, "t-1") and not live.flag_on(made, "t-2")
    on = stub.UpdateFeatureFlag(pb.UpdateFeatureFlagRequest(
        flag_name="new_editor", feature_flag=pb.FeatureFlag(enabled=True)),
        metadata=ADMIN.metadata())
    assert on.enabled and on.description == "the new editor" and live.flag_on(on, "t-2")
    listed = stub.ListFeatureFlags(pb.ListFeatureFlagsRequest(enabled=True),
                                   metadata=ADMIN.metadata())
    assert [f.name for f in listed.items] == ["new_editor"]
    for bad in (pb.UpdateFeatureFlagRequest(flag_name="Bad Name", allow_missing=True,
                                            feature_flag=pb.FeatureFlag()),
                pb.UpdateFeatureFlagRequest(flag_name="x", allow_missing=True,
                                            feature_flag=pb.FeatureFlag(rollout_percentage=101))):
        with pytest.raises(grpc.RpcError) as refused:
            stub.UpdateFeatureFlag(bad, metadata=ADMIN.metadata())
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    half = {"enabled": True, "rollout_percentage": 50, "tenant_ids": []}
    share = sum(live.flag_on(half, f"tenant-{i}") for i in range(1000))
    assert 350 < share < 650


def test_cache_clear_is_idempotent_and_clears_the_registered_caches(system):
    stub = _stub(system)
    placeholders.render("hello {{ name }}", {"name": "x"}) if hasattr(placeholders, "render") \
        else None
    first = stub.ClearCache(pb.ClearCacheRequest(), metadata=ADMIN.metadata())
    assert first.success and set(first.cleared) == set(caches.KNOWN)
    again = stub.ClearCache(pb.ClearCacheRequest(caches=["templates"]), metadata=ADMIN.metadata())
    assert again.success and list(again.cleared) == ["templates"] and again.keys_removed == 0
    with pytest.raises(grpc.RpcError) as unknown:
        stub.ClearCache(pb.ClearCacheRequest(caches=["nope"]), metadata=ADMIN.metadata())
    assert unknown.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "caches" in field_violations(unknown.value)


def test_restart_requests_reach_the_control_directory(system):
    stub = _stub(system)
    with pytest.raises(grpc.RpcError) as unknown:
        stub.RestartService(pb.RestartServiceRequest(service="nope"), metadata=ADMIN.metadata())
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    answer = stub.RestartService(pb.RestartServiceRequest(service="agents", reason="test"),
                                 metadata=ADMIN.metadata())
    assert answer.status == "restarting" and "tools" in answer.message
    request = json.loads(restart.request_path(system.control, "agents").read_text())
    assert request["reason"] == "test" and request["by"] == ADMIN.user_id
    with pytest.raises(grpc.RpcError) as busy:
        stub.RestartService(pb.RestartServiceRequest(service="agents"), metadata=ADMIN.metadata())
    assert error_reason(busy.value) == "RESTART_IN_PROGRESS"
    assert [r["service"] for r in restart.take(system.control)] == ["agents"]
    restart.done(system.control, "agents")
    assert not restart.in_progress(system.control, "agents")


def test_metrics_and_history(system):
    stub = _stub(system)
    metrics = stub.GetSystemMetrics(pb.GetSystemMetricsRequest(), metadata=ADMIN.metadata())
    assert 0 < metrics.memory_percent <= 100 and metrics.memory_used_mb > 0
    history = stub.GetSystemMetricsHistory(pb.GetSystemMetricsHistoryRequest(
        names=["memory_percent"]), metadata=ADMIN.metadata())
    assert history.series and history.series[0].points
    for bad in (pb.GetSystemMetricsHistoryRequest(names=["nope"]),
                pb.GetSystemMetricsHistoryRequest(start_time={"seconds": 100},
                                                  end_time={"seconds": 50}),
                pb.GetSystemMetricsHistoryRequest(start_time={"seconds": 0},
                                                  end_time={"seconds": 100000},
                                                  interval={"seconds": 1})):
        with pytest.raises(grpc.RpcError) as refused:
            stub.GetSystemMetricsHistory(bad, metadata=ADMIN.metadata())
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_p95_from_histogram_buckets():
    before = {0.01: 0, 0.1: 0, float("inf"): 0}
    after = {0.01: 90, 0.1: 100, float("inf"): 100}
    assert 10 < p95(before, after) < 100


def test_backup_while_writing_then_restore(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    db = data / "agents.db"
    connection = sqlite3.connect(db)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("CREATE TABLE alembic_version (version_num TEXT)")
    connection.execute("INSERT INTO alembic_version VALUES ('agents_0001')")
    connection.execute("CREATE TABLE rows (n INTEGER)")
    connection.commit()
    stop = threading.Event()

    def write() -> None:
        writer = sqlite3.connect(db)
        n = 0
        while not stop.is_set():
            writer.execute("INSERT INTO rows VALUES (?)", (n,))
            writer.commit()
            n += 1
        writer.close()

    thread = threading.Thread(target=write)
    thread.start()
    try:
        time.sleep(0.2)
        from mesh.runtime.settings import Settings

        settings = Settings(data_dir=data)
        target, manifest = backup.run(settings, backup.plan(settings, [], ["agents", "tools"]))
    finally:
        stop.set()
        thread.join()
    assert list(manifest["services"]) == ["agents"]
    assert manifest["services"]["agents"]["migration_revisions"] == ["agents_0001"]
    copied = sqlite3.connect(target / "agents.db").execute("SELECT count(*) FROM rows").fetchone()
    assert copied[0] > 0
    restored = tmp_path / "restored"
    backup.restore(target, restored)
    rows = sqlite3.connect(restored / "agents.db").execute("SELECT count(*) FROM rows").fetchone()
    assert rows == copied
    with pytest.raises(backup.RestoreError, match="already holds"):
        backup.restore(target, restored)
    (target / "agents.db").write_bytes(b"damaged")
    with pytest.raises(backup.RestoreError, match="checksum"):
        backup.restore(target, tmp_path / "other")
    assert not (tmp_path / "other" / "agents.db").exists()
