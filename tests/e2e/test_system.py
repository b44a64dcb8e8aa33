"""The system routes through the real gateway, as an operator sees them: status, health, info,
stats, metrics and history, logs, alerts, the runtime configuration (a log level change shows in
a running service's logs without a restart), feature flags, cache clears, restarts, and a backup
taken while writes run, restored into a new data directory that `agentmesh up` then serves."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from tests.conftest import assert_envelope, new_user, start_mesh, stop_mesh

WRITES = [("PUT", "/api/v1/system/config", {"config": {"logging": {"level": "INFO"}}}),
          ("POST", "/api/v1/system/restart/agents", {}),
          ("POST", "/api/v1/system/cache/clear", {}),
          ("POST", "/api/v1/system/backup", {}),
          ("PUT", "/api/v1/system/feature-flags/some_flag", {"enabled": True})]


def _eventually(fetch, ready, timeout=30.0, pause=0.5):
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if ready(value) or time.monotonic() > deadline:
            return value
        time.sleep(pause)


# The platform's internals: only an operator tenant's admin holds platform:read.
PLATFORM_READS = ["/api/v1/system/status", "/api/v1/system/config", "/api/v1/system/metrics",
                  "/api/v1/system/metrics/history", "/api/v1/system/alerts",
                  "/api/v1/system/feature-flags", "/metrics", "/api/v1/observability/metrics"]


def test_status_health_info_stats_metrics(mesh, tenant, operator):
    with mesh.client(tenant.token) as client:
        made = client.post("/api/v1/agents", json={"name": "stats-agent"})
        assert made.status_code == 200, made.text
        stats = client.get("/api/v1/system/stats").json()
        assert stats["tenant_id"] == tenant.tenant_id
        assert stats["agents"] >= 1 and stats["users"] == 1
        health = client.get("/api/v1/system/health")
        assert health.status_code == 200 and health.json()["status"] == "healthy"
    with mesh.client(operator.token) as client:
        status = client.get("/api/v1/system/status").json()
        assert status["status"] == "healthy", status
        names = {s["name"] for s in status["services"]}
        assert {"agents", "identity", "system", "workflows"} <= names
        assert status["uptime_seconds"] > 0
        info = _eventually(lambda: client.get("/api/v1/system/info").json(),
                           lambda i: all(s.get("migration_revisions")
                                         for s in i["services"] if s["name"] == "agents"))
        assert info["name"] == "Agent Mesh" and info["database"] == "sqlite"
        agents = next(s for s in info["services"] if s["name"] == "agents")
        assert agents["address"].startswith("127.0.0.1:") and agents["status"] == "healthy"
        assert agents["database"] == "sqlite" and agents["migration_revisions"]
        assert info["python_version"] and info["gateway_version"]
        metrics = client.get("/api/v1/system/metrics").json()
        assert 0 < metrics["memory_percent"] <= 100
        history = _eventually(
            lambda: client.get("/api/v1/system/metrics/history",
                               params={"names": "memory_percent"}).json(),
            lambda h: h.get("series"))
        assert history["series"][0]["name"] == "memory_percent"
        assert history["series"][0]["points"]
        alerts = client.get("/api/v1/system/alerts", params={"state": "ALERT_STATE_FIRING"})
        assert alerts.status_code == 200 and "items" in alerts.json()


def test_a_tenant_admin_sees_its_own_figures_and_no_platform_internals(
        mesh, tenant, other_tenant, operator):
    """A self-registered tenant's admin: 403 naming platform:read on every route that shows
    the platform's inside (addresses, migrations, config, host and all-tenant figures, platform
    alerts, the flags' tenants); its own stats, health, log lines and features only; the
    operator's admin still gets everything."""
    mine, theirs = f"mine-{uuid.uuid4().hex}", f"theirs-{uuid.uuid4().hex}"
    with mesh.client(other_tenant.token) as client:
        client.post("/api/v1/agents", json={"name": f"o-{uuid.uuid4().hex[:6]}"},
                    headers={"X-Correlation-ID": theirs})
    with mesh.client(tenant.token) as client:
        client.post("/api/v1/agents", json={"name": f"m-{uuid.uuid4().hex[:6]}"},
                    headers={"X-Correlation-ID": mine})
        for path in PLATFORM_READS:
            body = assert_envelope(client.get(path), 403, "PERMISSION_DENIED")
            assert body["details"]["required_scope"] == "platform:read", path
        info = client.get("/api/v1/system/info")
        assert info.status_code == 200, info.text
        info = info.json()
        assert info["name"] == "Agent Mesh" and info["version"] and info["api_version"] == "v1"
        assert info["services"] == [] and not info["database"], info
        assert not (info["python_version"] or info["gateway_version"] or info["build_commit"])
        assert "127.0.0.1" not in str(info)
        assert client.get("/api/v1/system/stats").json()["tenant_id"] == tenant.tenant_id
        assert client.get("/api/v1/system/health").status_code == 200
        lines = _eventually(lambda: client.get("/api/v1/system/logs",
                                               params={"correlation_id": mine}).json(),
                            lambda r: r["total"] >= 1)
        assert lines["total"] >= 1
        assert client.get("/api/v1/system/logs",
                          params={"correlation_id": theirs}).json()["total"] == 0
        roles = {r["role"]: r["scopes"] for r in client.get("/api/v1/auth/roles").json()["items"]}
        assert "system:read" in roles["ROLE_ADMIN"] and "agents:*" in roles["ROLE_ADMIN"]
        assert not {"*", "platform:read", "platform:*", "system:write", "system:*"} & \
            set(roles["ROLE_ADMIN"])
        me = client.get("/api/v1/auth/me").json()
        assert "platform:read" not in me["scopes"] and "*" not in me["scopes"]
        refused = client.post("/api/v1/auth/api-keys", json={"name": "scraper",
                                                             "scopes": ["platform:read"]})
        assert assert_envelope(refused, 403, "PERMISSION_DENIED")["details"]["reason"] == \
            "SCOPE_NOT_HELD"
    with mesh.client(operator.token) as client:
        for path in PLATFORM_READS:
            assert client.get(path).status_code == 200, path
        roles = {r["role"]: r["scopes"] for r in client.get("/api/v1/auth/roles").json()["items"]}
        assert roles["ROLE_ADMIN"] == ["*"]
        info = client.get("/api/v1/system/info").json()
        assert info["services"] and info["python_version"] and info["database"] == "sqlite"
        # An operator's API key for a Prometheus scrape of the public /metrics.
        key = client.post("/api/v1/auth/api-keys", json={"name": "scraper",
                                                         "scopes": ["platform:read"]})
        assert key.status_code == 200, key.text
    with mesh.client(api_key=key.json()["key"]) as client:
        scraped = client.get("/metrics")
        assert scraped.status_code == 200 and "agentmesh_requests_total" in scraped.text


def test_prometheus_scrapes_listeners_of_its_own(mesh):
    """The gateway's Envoy stats on its metrics listener (nothing else of Envoy's admin
    interface there), every service process on its own port: the targets `agentmesh up`
    writes for Prometheus's file_sd, none of them the public listener."""
    import json

    import httpx2

    groups = json.loads((mesh.data_dir / "prometheus-targets.json").read_text())
    public = mesh.url.removeprefix("http://")
    by_component = {g["labels"]["component"]: g for g in groups}
    assert set(by_component) == {"gateway", "services"}
    for group in groups:
        for target in group["targets"]:
            assert target != public
            reply = httpx2.get(f"http://{target}{group['labels']['__metrics_path__']}", timeout=10)
            assert reply.status_code == 200, (target, reply.text[:200])
            assert "# TYPE" in reply.text
    gateway = by_component["gateway"]["targets"][0]
    assert "envoy_http_downstream_rq" in httpx2.get(f"http://{gateway}/stats/prometheus").text
    for path in ("/server_info", "/config_dump", "/stats", "/metrics"):
        assert httpx2.get(f"http://{gateway}{path}").status_code == 404, path
    assert httpx2.post(f"http://{gateway}/quitquitquit").status_code == 404
    assert httpx2.get(f"http://{gateway}/stats/prometheus").status_code == 200


def test_a_viewer_gets_403_on_every_system_write(mesh, tenant):
    """Viewers and developers, and the admin of a tenant that does not operate the platform
    (any self-registered tenant), cannot steer the platform every tenant runs on, nor read its
    internals."""
    viewer = new_user(mesh, tenant, "ROLE_VIEWER")[2]
    developer = new_user(mesh, tenant, "ROLE_DEVELOPER")[2]
    with mesh.client(tenant.token) as client:
        me = client.get("/api/v1/auth/me").json()
        assert "system:write" not in me["scopes"] and "agents:*" in me["scopes"]
    for token in (viewer, developer, tenant.token):
        with mesh.client(token) as client:
            assert client.get("/api/v1/system/stats").status_code == 200
            assert_envelope(client.get("/api/v1/system/config"), 403, "PERMISSION_DENIED")
            for method, path, body in WRITES:
                reply = client.request(method, path, json=body)
                assert_envelope(reply, 403, "PERMISSION_DENIED")
                assert reply.json()["details"]["required_scope"] == "system:write"


def test_config_hides_secrets_and_bad_input_is_400(mesh, operator):
    with mesh.client(operator.token) as client:
        config = client.get("/api/v1/system/config").json()
        assert "settings" in config["config"] and "logging" in config["config"]
        assert config["config"]["settings"].get("secrets_kek") in ("", "***")
        for body in ({}, {"config": {"logging": {"level": "LOUD"}}}, {"config": {"x": 1}},
                     {"config": {"logging": "x" * 5000}}):
            reply = client.put("/api/v1/system/config", json=body)
            assert_envelope(reply, 400, "INVALID_ARGUMENT")
        oversized = client.put("/api/v1/system/config",
                               json={"config": {"logging": {"level": "x" * (2 * 1024 * 1024)}}})
        assert oversized.status_code == 413
        malformed = client.put("/api/v1/system/config", content=b"{not json",
                               headers={"Content-Type": "application/json"})
        assert malformed.status_code == 400
        for path in ("/api/v1/system/logs?page_size=1000", "/api/v1/system/alerts?order_by=x",
                     "/api/v1/system/metrics/history?names=nope"):
            assert client.get(path).status_code == 400, path


def _debug_lines(client, correlation_id: str) -> list:
    return client.get("/api/v1/system/logs", params={
        "correlation_id": correlation_id, "level": "LOG_LEVEL_DEBUG"}).json()["items"]


def _agents_revision(client) -> str:
    status = client.get("/api/v1/system/status").json()
    return next(s for s in status["services"] if s["name"] == "agents").get("config_revision", "")


def test_a_log_level_change_shows_in_a_running_service_without_restart(mesh, operator):
    with mesh.client(operator.token) as client:
        quiet = f"quiet-{uuid.uuid4().hex}"
        client.get("/api/v1/agents", headers={"X-Correlation-ID": quiet})
        updated = client.put("/api/v1/system/config", json={"config": {
            "logging": {"level": "INFO", "services": {"agents": "DEBUG"}}}})
        assert updated.status_code == 200, updated.text
        assert updated.json()["config"]["logging"]["services"] == {"agents": "DEBUG"}

        def debug_call():
            correlation = f"debug-{uuid.uuid4().hex}"
            client.get("/api/v1/agents", headers={"X-Correlation-ID": correlation})
            time.sleep(1)  # the log shipper sends every half second
            return _debug_lines(client, correlation)

        lines = _eventually(debug_call, bool, timeout=40)
        assert lines and lines[0]["service"] == "agents"
        assert lines[0]["level"] == "LOG_LEVEL_DEBUG" and "answered OK" in lines[0]["message"]
        assert _debug_lines(client, quiet) == []  # before the change: no debug line
        applied = _agents_revision(client)
        reset = client.put("/api/v1/system/config", json={"config": {"logging": {"level": "INFO"}}})
        assert reset.status_code == 200
        _eventually(lambda: _agents_revision(client), lambda r: r != applied, timeout=40)
        after = f"after-{uuid.uuid4().hex}"
        client.get("/api/v1/agents", headers={"X-Correlation-ID": after})
        time.sleep(2)
        assert _debug_lines(client, after) == []


def test_feature_flags_and_cache_clear(mesh, operator):
    with mesh.client(operator.token) as client:
        name = f"flag_{uuid.uuid4().hex[:8]}"
        missing = client.put(f"/api/v1/system/feature-flags/{name}", json={"enabled": True})
        assert_envelope(missing, 404, "NOT_FOUND")
        made = client.put(f"/api/v1/system/feature-flags/{name}?allow_missing=true",
                          json={"enabled": True, "tenant_ids": [operator.tenant_id]})
        assert made.status_code == 200 and made.json()["enabled"] is True
        listed = client.get("/api/v1/system/feature-flags", params={"search": name}).json()
        assert [f["name"] for f in listed["items"]] == [name]
        info = client.get("/api/v1/system/info").json()
        assert name in info["enabled_features"]
        for _ in range(2):  # idempotent
            cleared = client.post("/api/v1/system/cache/clear", json={})
            assert cleared.status_code == 200 and cleared.json()["success"] is True
            assert "policies" in cleared.json()["cleared"]
        assert_envelope(client.post("/api/v1/system/cache/clear", json={"caches": ["nope"]}),
                        400, "INVALID_ARGUMENT")


def test_restart_of_one_service(mesh, operator):
    with mesh.client(operator.token) as client:
        assert_envelope(client.post("/api/v1/system/restart/nope", json={}), 404, "NOT_FOUND")
        before = client.get("/api/v1/system/status").json()
        started = next(s for s in before["services"] if s["name"] == "tools")["started_at"]
        reply = client.post("/api/v1/system/restart/tools", json={"reason": "e2e"})
        assert reply.status_code == 200, reply.text
        assert reply.json()["status"] == "restarting"

        def tools_started():
            try:
                status = client.get("/api/v1/system/status")
            except Exception:  # noqa: BLE001 - the process restarts
                return None
            if status.status_code != 200:
                return None
            return next(s for s in status.json()["services"] if s["name"] == "tools")

        after = _eventually(tools_started, lambda s: s is not None and s["status"] == "healthy"
                            and s.get("started_at", started) != started, timeout=90)
        assert after["status"] == "healthy" and after["started_at"] != started
        assert client.get("/api/v1/tools").status_code == 200


def test_backup_while_writing_then_restore_and_serve(mesh, operator, tmp_path):
    stop = threading.Event()
    written: list[str] = []

    def write():
        with mesh.client(operator.token) as writer:
            while not stop.is_set():
                name = f"bk-{uuid.uuid4().hex[:8]}"
                if writer.post("/api/v1/agents", json={"name": name}).status_code == 200:
                    written.append(name)

    thread = threading.Thread(target=write)
    thread.start()
    try:
        _eventually(lambda: len(written), lambda n: n >= 3, timeout=30, pause=0.1)
        with mesh.client(operator.token) as client:
            backup = client.post("/api/v1/system/backup", json={"description": "e2e"})
            assert backup.status_code == 200, backup.text
            backup_id = backup.json()["id"]
            assert backup.json()["status"] == "BACKUP_STATUS_PENDING"

            def done():
                items = client.get("/api/v1/system/alerts", params={"service": "system"}).json()
                return [a for a in items["items"] if backup_id in a["message"]]
            alerts = _eventually(done, bool, timeout=60)
    finally:
        stop.set()
        thread.join()
    assert alerts and alerts[0]["title"] == "backup completed", alerts
    backups = list((mesh.data_dir / "backups").glob(f"*-{backup_id[:8]}"))
    assert len(backups) == 1 and (backups[0] / "manifest.json").is_file()
    restored = tmp_path / "restored"
    result = subprocess.run([sys.executable, "-m", "mesh.cli", "restore", str(backups[0]),
                             "--data-dir", str(restored)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    again = subprocess.run([sys.executable, "-m", "mesh.cli", "restore", str(backups[0]),
                            "--data-dir", str(restored)], capture_output=True, text=True)
    assert again.returncode == 1 and "already holds" in again.stderr
    shutil.copy(mesh.data_dir / "secrets-kek.json", restored / "secrets-kek.json")
    second = start_mesh(restored)
    try:
        with second.client() as client:
            login = client.post("/api/v1/auth/login", json={"email": operator.email,
                                                             "password": operator.password})
            assert login.status_code == 200, login.text
            token = login.json()["access_token"]
        with second.client(token) as client:
            names = {a["name"] for a in client.get("/api/v1/agents",
                                                   params={"page_size": 100}).json()["items"]}
    finally:
        stop_mesh(second)
    # Every agent created before the backup was asked for is there.
    assert set(written[:3]) <= names
