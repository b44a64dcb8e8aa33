"""`agentmesh up` as a supervisor: rate limiting, restarts of crashed services, a clean stop."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import time

import httpx2

from tests.conftest import assert_envelope, register, start_mesh, stop_mesh


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _cmdline(pid: int) -> str:
    return open(f"/proc/{pid}/cmdline").read().replace("\0", " ")


def _listening_tcp_ports(pid: int) -> set[int]:
    """The TCP ports process `pid` listens on (its socket inodes matched in /proc/net/tcp*)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _envoy_admin_is_a_private_socket_only(mesh, envoy: int) -> None:
    """Envoy's admin interface is a Unix socket in the data directory that only the mesh's
    user may open, and no TCP port of Envoy serves it (a tenant's outbound request could reach
    a port on 127.0.0.1; `POST /quitquitquit` would stop the gateway)."""
    socket_path = mesh.data_dir / "envoy-admin.sock"
    assert stat.S_ISSOCK(socket_path.stat().st_mode)
    assert stat.S_IMODE(socket_path.stat().st_mode) == 0o600
    transport = httpx2.HTTPTransport(uds=str(socket_path))
    with httpx2.Client(transport=transport, base_url="http://envoy") as admin:
        assert admin.get("/ready").text.strip() == "LIVE"
    # The gateway's listener and its metrics listener (Prometheus's, prometheus-targets.json),
    # which serves /stats/prometheus and nothing else of the admin interface.
    targets = json.loads((mesh.data_dir / "prometheus-targets.json").read_text())
    gateway_metrics = next(g for g in targets if g["labels"]["component"] == "gateway")
    metrics_port = int(gateway_metrics["targets"][0].rsplit(":", 1)[1])
    ports = _listening_tcp_ports(envoy)
    assert ports == {int(mesh.url.rsplit(":", 1)[1]), metrics_port}, ports
    for port in ports:
        answer = httpx2.get(f"http://127.0.0.1:{port}/server_info")
        assert "hot_restart_version" not in answer.text
        assert httpx2.post(f"http://127.0.0.1:{port}/quitquitquit").status_code != 200
    assert "envoy_server_live" in httpx2.get(f"http://127.0.0.1:{metrics_port}/stats/prometheus").text


def test_shared_process_hosts_every_service_and_is_restarted_whole(tmp_path):
    mesh = start_mesh(tmp_path / "shared")
    children = _children(mesh.process.pid)
    assert len(children) == 2  # one Python process for the ten services, and Envoy
    services = next(p for p in children if " serve " in _cmdline(p))
    _envoy_admin_is_a_private_socket_only(mesh, next(p for p in children if p != services))
    tenant = register(mesh)
    os.kill(services, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = _children(mesh.process.pid)
        if len(now) == 2 and services not in now:
            break
    else:
        raise AssertionError("the services process was not restarted")
    with mesh.client(tenant.token) as client:  # data and keys survive the restart
        for _ in range(60):
            if client.get("/api/v1/agents").status_code == 200:
                break
            time.sleep(0.5)
        assert client.get("/api/v1/agents").status_code == 200
    stop_mesh(mesh)
    assert mesh.process.returncode == 0


def _live_events_cross_processes(mesh, tenant) -> None:
    """With one process per service (and no NATS), the workflows process hands its events to
    the live process, whose socket shows them."""
    import asyncio
    import json

    from websockets.asyncio.client import connect

    from tests.e2e.test_live_events import _approval_flow, _approve, _read_until, _wait_status

    async def scenario():
        with mesh.client(tenant.token) as client:
            execution = _approval_flow(client)
            await _wait_status(client, execution["id"], "EXECUTION_STATUS_WAITING_APPROVAL")
            async with connect(mesh.url.replace("http", "ws") + f"/ws/{execution['id']}",
                               additional_headers={"Authorization": f"Bearer {tenant.token}"}
                               ) as ws:
                assert json.loads(await ws.recv())["type"] == "state"
                _approve(client, execution["id"])
                return await _read_until(ws, lambda m: m["payload"].get("status") ==
                                         "EXECUTION_STATUS_COMPLETED")
    seen = asyncio.run(scenario())
    assert all(m["type"] == "execution.progress" for m in seen)
    assert [m["payload"]["event_id"] for m in seen] == sorted(m["payload"]["event_id"]
                                                               for m in seen)


def test_rate_limit_restart_and_clean_stop(tmp_path):
    mesh = start_mesh(tmp_path / "small", rate_limit=40, isolation="process")
    children = _children(mesh.process.pid)
    assert len(children) == 12  # eleven services and Envoy
    tenant = register(mesh)
    _live_events_cross_processes(mesh, tenant)
    with mesh.client(tenant.token) as client:
        statuses = [client.get("/api/v1/agents").status_code for _ in range(60)]
        assert 429 in statuses and statuses[0] == 200
        limited = client.get("/api/v1/agents")
        body = assert_envelope(limited, 429, "RATE_LIMIT_EXCEEDED")
        assert body["correlation_id"]
        assert limited.headers["x-ratelimit-limit"] == "40"
    # A crashed service is restarted by the supervisor.
    agents_pid = next(p for p in _children(mesh.process.pid) if "serve agents" in _cmdline(p))
    os.kill(agents_pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    restarted = False
    while time.monotonic() < deadline and not restarted:
        time.sleep(0.5)
        now = _children(mesh.process.pid)
        restarted = len(now) == 12 and agents_pid not in now
    assert restarted, "agents was not restarted"
    stop_mesh(mesh)
    assert mesh.process.returncode == 0
    for pid in children:
        assert not os.path.exists(f"/proc/{pid}") or \
            open(f"/proc/{pid}/status").read().find("State:\tZ") >= 0, f"{pid} left behind"
