"""The per-call floor of a Python gRPC server on this machine, before any Agent Mesh code runs.

A server process whose GetAgent returns one constant Agent is driven by a client process with
N concurrent calls for a few seconds; the server's CPU time over the run divided by the calls it
answered is the floor that every Agent Mesh GET pays. Variants: grpc.aio on the default asyncio
loop, grpc.aio on uvloop, and metadata like what Envoy forwards.

    .venv/bin/python bench/grpc_floor.py --seconds 5

`BareBehindGateway` puts the same server behind a copy of a running mesh's own Envoy config
(its agents cluster pointed at the bare server), so that bench/lean_runtime.py can print the
floor of the real request path next to the mesh's figure.
"""
from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "gen"), str(ROOT / "services")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(port: int, loop: str) -> None:
    import grpc
    from agentmesh.agents.v1 import agents_pb2, agents_pb2_grpc

    reply = agents_pb2.Agent(id="x", name="floor", description="a" * 200)

    class Agents(agents_pb2_grpc.AgentServiceServicer):
        async def GetAgent(self, request, context):  # noqa: N802 - gRPC method name
            return reply

    async def main() -> None:
        server = grpc.aio.server()
        agents_pb2_grpc.add_AgentServiceServicer_to_server(Agents(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        print("ready", flush=True)
        await server.wait_for_termination()

    if loop == "uvloop":
        import uvloop
        uvloop.run(main())
    else:
        asyncio.run(main())


async def drive(port: int, seconds: float, concurrency: int, metadata: int) -> int:
    import grpc
    from agentmesh.agents.v1 import agents_pb2, agents_pb2_grpc

    meta = tuple((f"x-forwarded-{i}", "v" * 40) for i in range(metadata))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = agents_pb2_grpc.AgentServiceStub(channel)
        request = agents_pb2.GetAgentRequest(agent_id="x")
        deadline = time.monotonic() + seconds
        done = 0

        async def worker() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                await stub.GetAgent(request, metadata=meta)
                done += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return done


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(loop: str, metadata: int, seconds: float, concurrency: int) -> tuple[float, float]:
    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port), "--loop", loop],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout and server.stdout.readline().strip() == "ready"
        asyncio.run(drive(port, 1.0, concurrency, metadata))  # warm up
        before = cpu_seconds(server.pid)
        calls = asyncio.run(drive(port, seconds, concurrency, metadata))
        spent = cpu_seconds(server.pid) - before
        return calls / seconds, spent / calls * 1000
    finally:
        server.terminate()
        server.wait()


class BareBehindGateway:
    """The bare server behind a second Envoy started from a running mesh's envoy.json, with
    only the listener, the admin port and the agents cluster changed: the same filters (JWT,
    RBAC, transcoder, Lua) in front of a handler that does nothing. The JWKS still comes from
    the mesh's own gateway, so the mesh must be up."""

    def __init__(self, mesh_envoy_json: Path, envoy_binary: str, work: Path) -> None:
        self.mesh_envoy_json = mesh_envoy_json
        self.envoy_binary = envoy_binary
        self.work = work
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.server: subprocess.Popen | None = None
        self.envoy: subprocess.Popen | None = None

    def start(self) -> None:
        backend = free_port()
        self.server = subprocess.Popen([sys.executable, __file__, "--serve", str(backend)],
                                       stdout=subprocess.PIPE, text=True)
        assert self.server.stdout and self.server.stdout.readline().strip() == "ready"
        config = json.loads(self.mesh_envoy_json.read_text())
        # The mesh's admin interface is a Unix socket, and it has a metrics listener: this
        # copy gets a socket of its own and no metrics listener (its port is the mesh's).
        config["admin"] = {"address": {"pipe": {"path": str(self.work / "floor-admin.sock"),
                                                "mode": 0o600}}}
        resources = config["static_resources"]
        resources["listeners"] = [item for item in resources["listeners"]
                                  if item["name"] == "gateway"]
        resources["clusters"] = [c for c in resources["clusters"] if c["name"] != "gateway_admin"]
        (listener,) = resources["listeners"]
        listener["address"]["socket_address"]["port_value"] = self.port
        (agents,) = [c for c in config["static_resources"]["clusters"] if c["name"] == "agents"]
        agents["load_assignment"]["endpoints"] = [{"lb_endpoints": [{"endpoint": {"address": {
            "socket_address": {"address": "127.0.0.1", "port_value": backend}}}}]}]
        path = self.work / "floor-envoy.json"
        path.write_text(json.dumps(config))
        log = open(self.work / "floor-envoy.log", "ab")
        self.envoy = subprocess.Popen(
            [self.envoy_binary, "-c", str(path), "--log-level", "warn", "--disable-hot-restart",
             "--concurrency", "2", "--base-id", str(backend)], stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"the floor's Envoy did not listen; see {self.work}/floor-envoy.log")

    @property
    def pid(self) -> int:
        assert self.server
        return self.server.pid

    def stop(self) -> None:
        for process in (self.envoy, self.server):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--serve", type=int)
    parser.add_argument("--loop", default="asyncio", choices=["asyncio", "uvloop"])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.loop)
        return
    print(f"{'loop':<8} {'metadata':>8} {'calls/s':>9} {'server CPU ms/call':>19}")
    for _ in range(args.rounds):
        # uvloop is not a dependency of Agent Mesh: measured when it happens to be installed.
        for loop in ("asyncio", "uvloop") if importlib.util.find_spec("uvloop") else ("asyncio",):
            for metadata in (0, 20):
                rate, per_call = measure(loop, metadata, args.seconds, args.concurrency)
                print(f"{loop:<8} {metadata:>8} {rate:>9.0f} {per_call:>19.3f}", flush=True)


if __name__ == "__main__":
    main()
