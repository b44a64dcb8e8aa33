"""What the platform itself costs per tool call: `execute` of a builtin tool through the gateway.

Starts the real mesh in-process (every service plus Envoy, on 127.0.0.1, in a temporary
directory), registers a tenant, creates a builtin `echo` tool, then for a fixed time with N
concurrent closed-loop workers measures:

  * POST /api/v1/tools/{id}/execute   (gateway: JWT, RBAC, transcoding; the tools service: load
                                        the tool, validate the arguments against the schema, run
                                        echo, record the execution)
  * GET  /api/v1/tools/{id}           (the same path for a plain read, as a floor)
  * ToolService.ExecuteTool direct    (gRPC straight to the tools service, no gateway)

and prints p50 / p99 latency and throughput. A model call takes hundreds of milliseconds to
seconds; the execute overhead is what Agent Mesh adds to each tool call an agent makes.

    .venv/bin/python bench/tool_execute.py [--seconds 5] [--concurrency 1]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import httpx2

from agentmesh.tools.v1 import tools_pb2, tools_pb2_grpc
from mesh.supervisor import Mesh, free_port

REQUEST_TIMEOUT = 10.0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


async def drive(attempt: Callable[[], Awaitable[bool]], seconds: float,
                concurrency: int) -> tuple[list[float], int]:
    latencies: list[float] = []
    errors = 0
    stop = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal errors
        while time.monotonic() < stop:
            started = time.perf_counter()
            ok = await attempt()
            if ok:
                latencies.append((time.perf_counter() - started) * 1000)
            else:
                errors += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, errors


async def run(args: argparse.Namespace) -> int:
    data_dir = Path(tempfile.mkdtemp(prefix="agentmesh-bench-tools-"))
    mesh = Mesh(data_dir=data_dir, port=free_port(), quiet=True,
                rate_limit_per_minute=10_000_000)
    failed = True
    try:
        print(f"starting the mesh ({data_dir}) ...", flush=True)
        await mesh.start()
        base = f"http://127.0.0.1:{mesh.port}"
        limits = httpx2.Limits(max_connections=args.concurrency,
                              max_keepalive_connections=args.concurrency)
        async with httpx2.AsyncClient(base_url=base, limits=limits, timeout=REQUEST_TIMEOUT) as http:
            reply = await http.post("/api/v1/auth/register", json={
                "tenant_name": "bench", "email": f"bench-{uuid.uuid4().hex[:8]}@example.com",
                "password": "correct-horse-1"})
            reply.raise_for_status()
            body = reply.json()
            http.headers["Authorization"] = f"Bearer {body['access_token']}"
            tool = (await http.post("/api/v1/tools", json={
                "name": "bench-echo", "type": "TOOL_TYPE_BUILTIN", "status": "TOOL_STATUS_ACTIVE",
                "builtin": {"builtin_name": "echo"},
                "input_schema": {"type": "object", "required": ["text"],
                                 "properties": {"text": {"type": "string"}}}})).json()
            arguments = {"text": "hello", "n": 1}
            check = await http.post(f"/api/v1/tools/{tool['id']}/execute",
                                    json={"arguments": arguments})
            assert check.json()["status"] == "TOOL_EXECUTION_STATUS_COMPLETED", check.text
            metadata = (("x-agentmesh-tenant-id", body["tenant"]["id"]),
                        ("x-agentmesh-user-id", body["user"]["id"]), ("x-agentmesh-scopes", "*"))

            async def execute() -> bool:
                r = await http.post(f"/api/v1/tools/{tool['id']}/execute",
                                    json={"arguments": arguments})
                return r.status_code == 200

            async def read() -> bool:
                return (await http.get(f"/api/v1/tools/{tool['id']}")).status_code == 200

            async with grpc.aio.insecure_channel(f"127.0.0.1:{mesh.ports['tools']}") as channel:
                stub = tools_pb2_grpc.ToolServiceStub(channel)
                request = tools_pb2.ExecuteToolRequest(tool_id=tool["id"])
                request.arguments.update(arguments)

                async def direct() -> bool:
                    try:
                        await stub.ExecuteTool(request, metadata=metadata, timeout=REQUEST_TIMEOUT)
                        return True
                    except grpc.RpcError:
                        return False

                print(f"measuring {args.seconds:g} s each, {args.concurrency} worker(s), on a "
                      f"{os.cpu_count()}-core machine shared with Envoy and every service\n")
                print(f"{'call':<42} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
                      f"{'errors':>7}")
                rows = []
                for label, attempt in (("POST /tools/{id}/execute (gateway)", execute),
                                       ("GET /tools/{id} (gateway, a plain read)", read),
                                       ("ToolService.ExecuteTool (direct gRPC)", direct)):
                    await drive(attempt, min(1.0, args.seconds), args.concurrency)  # warm-up
                    latencies, errors = await drive(attempt, args.seconds, args.concurrency)
                    rows.append((label, latencies, errors))
                    print(f"{label:<42} {len(latencies):>9} {len(latencies) / args.seconds:>8.0f} "
                          f"{percentile(latencies, 50):>8.2f} {percentile(latencies, 99):>8.2f} "
                          f"{errors:>7}", flush=True)
        failed = any(errors for _, _, errors in rows)
        return 1 if failed else 0
    finally:
        await mesh.stop()
        if failed:
            print(f"\nmesh state and logs kept in {data_dir}", file=sys.stderr)
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each measured run")
    parser.add_argument("--concurrency", type=int, default=1, help="concurrent workers")
    args = parser.parse_args()
    if args.seconds <= 0 or args.concurrency <= 0:
        parser.error("--seconds and --concurrency must be positive")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
