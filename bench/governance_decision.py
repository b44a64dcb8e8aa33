"""Governance: how long a decision takes, and what the global rate-limit filter costs a GET.

1. The decision itself: a tenant's Cedar policies (20 policies, 40 statements) compiled once,
   then `engine.evaluate` on a tool call, N times: p50/p99/max in microseconds (goal: p99 < 1 ms).
   Also the whole `Decide` RPC against the in-process service (cache lookup, usage context,
   Cedar, the audit row written to SQLite, the webhook fan-out scheduled), for comparison.
2. The rate-limit filter: the same `GET /api/v1/agents/{id}` through two meshes started one
   after the other in this run, one without and one with Envoy's global rate-limit filter
   (every request then also asks governance's RateLimitService, counters in memory, limits high
   enough never to trip): throughput and p50/p99 of each, and the ratio.

    .venv/bin/python bench/governance_decision.py [--decisions 20000] [--seconds 5] [--concurrency 8]

Nothing is asserted; the load generator shares the machine with Envoy and every service, so
compare the two GET runs with each other rather than reading them as capacity.
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
from pathlib import Path

import grpc
import httpx2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agentmesh.governance.v1 import governance_pb2 as pb  # noqa: E402
from agentmesh.governance.v1 import governance_pb2_grpc as pb_grpc  # noqa: E402
from mesh.governance import engine  # noqa: E402


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(pct / 100 * len(ordered)))) - 1]


def policies() -> list[tuple[str, str, int, str]]:
    out = []
    for i in range(20):
        out.append((str(uuid.uuid4()), f"policy-{i:02d}", 1, f'''
@id("forbid-{i}")
forbid(principal == Agent::"agent-{i}", action == Action::"call_tool", resource == Tool::"tool-{i}");
permit(principal, action == Action::"call_tool", resource)
  when {{ context.arguments has amount && context.arguments.amount < {100 + i}
          && context.usage.cost_today_cents < 10000 && context.time.hour >= 0 }};'''))
    return out


def bench_engine(n: int) -> None:
    compiled = engine.CompiledPolicies.build(1, policies())
    request = engine.Request("Agent", "agent-3", "call_tool", "Tool", "search",
                             arguments={"amount": 42, "query": "weather in Lisbon"},
                             usage={"tokens_today": 1200, "cost_today_cents": 37})
    for _ in range(500):  # warm-up
        engine.evaluate(compiled, request)
    samples, cpu = [], []
    for _ in range(n):
        started, started_cpu = time.perf_counter_ns(), time.thread_time_ns()
        outcome = engine.evaluate(compiled, request)
        cpu.append((time.thread_time_ns() - started_cpu) / 1000)
        samples.append((time.perf_counter_ns() - started) / 1000)
    assert outcome.allowed
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (wall time includes "
          "waiting for a core; CPU time does not)")
    for label, values in (("wall", samples), ("CPU ", cpu)):
        print(f"decision (Cedar, {len(compiled.labels)} statements, {n} runs) {label}: "
              f"p50 {percentile(values, 50):.0f} us  p99 {percentile(values, 99):.0f} us  "
              f"max {max(values):.0f} us  -> goal p99 < 1000 us: "
              f"{'met' if percentile(values, 99) < 1000 else 'NOT met'}")


async def bench_decide_rpc(n: int) -> None:
    from mesh.governance.service import DEFINITION
    from mesh.runtime import internal
    from mesh.runtime.server import start
    from mesh.runtime.settings import Settings

    data_dir = Path(tempfile.mkdtemp(prefix="agentmesh-gov-bench-"))
    settings = Settings(data_dir=data_dir)
    running = await start(DEFINITION, settings, port=0)
    try:
        tenant, user = str(uuid.uuid4()), str(uuid.uuid4())
        # As another service calls it: Decide is internal, so with the platform's token.
        metadata = (("x-agentmesh-tenant-id", tenant), ("x-agentmesh-user-id", user),
                    ("x-agentmesh-scopes", "*"), ("x-correlation-id", "bench"),
                    (internal.HEADER, internal.token(settings)))
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = pb_grpc.GovernanceServiceStub(channel)
            for _, name, _, text in policies():
                await stub.CreatePolicy(pb.CreatePolicyRequest(policy=pb.Policy(
                    name=name, cedar=text)), metadata=metadata)
            args = {"amount": 42}
            request = pb.DecideRequest(request=pb.DecisionRequest(
                principal_type="Agent", principal_id="agent-3", action="call_tool",
                resource_type="Tool", resource_id="search"))
            request.request.arguments.update(args)
            rpc, inside = [], []
            for i in range(n + 50):
                started = time.perf_counter_ns()
                decision = await stub.Decide(request, metadata=metadata)
                if i >= 50:
                    rpc.append((time.perf_counter_ns() - started) / 1e6)
                    inside.append(decision.decision_time_us)
        print(f"Decide RPC in-process ({n} calls, incl. audit write): p50 {percentile(rpc, 50):.2f} ms"
              f"  p99 {percentile(rpc, 99):.2f} ms; decision_time_us recorded: "
              f"p50 {percentile(inside, 50):.0f} us  p99 {percentile(inside, 99):.0f} us")
    finally:
        await running.stop(1)
        shutil.rmtree(data_dir, ignore_errors=True)


async def drive_get(global_limit: bool, seconds: float, concurrency: int) -> tuple[float, float, float, int]:
    from mesh.supervisor import Mesh, free_port

    os.environ["AGENTMESH_GATEWAY_GLOBAL_RATE_LIMIT"] = "1" if global_limit else ""
    for key in ("GLOBAL", "PER_IP", "PER_TENANT"):
        os.environ[f"AGENTMESH_RATE_LIMIT_{key}_PER_MINUTE"] = "100000000"
    data_dir = Path(tempfile.mkdtemp(prefix="agentmesh-rl-bench-"))
    mesh = Mesh(data_dir=data_dir, port=free_port(), quiet=True, rate_limit_per_minute=10_000_000)
    await mesh.start()
    try:
        limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx2.AsyncClient(base_url=f"http://127.0.0.1:{mesh.port}", limits=limits,
                                     timeout=10) as http:
            reply = await http.post("/api/v1/auth/register", json={
                "tenant_name": "bench", "email": f"bench-{uuid.uuid4().hex[:8]}@example.com",
                "password": "bench-password"})
            http.headers["Authorization"] = f"Bearer {reply.json()['access_token']}"
            agent = (await http.post("/api/v1/agents", json={"name": "bench"})).json()["id"]
            path = f"/api/v1/agents/{agent}"
            check = await http.get(path)
            # The global limits are 100000000 a minute; the gateway's local bucket is 10000000.
            limited = check.headers.get("x-ratelimit-limit", "").startswith("100000000")
            latencies: list[float] = []
            errors = 0
            deadline = time.perf_counter() + seconds

            async def worker() -> None:
                nonlocal errors
                while time.perf_counter() < deadline:
                    started = time.perf_counter()
                    answer = await http.get(path)
                    if answer.status_code == 200:
                        latencies.append((time.perf_counter() - started) * 1000)
                    else:
                        errors += 1

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            elapsed = time.perf_counter() - started
        assert limited == global_limit, "the filter is not in the state this run expects"
        return len(latencies) / elapsed, percentile(latencies, 50), percentile(latencies, 99), errors
    finally:
        await mesh.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


async def run(args: argparse.Namespace) -> None:
    bench_engine(args.decisions)
    await bench_decide_rpc(min(args.decisions, 2000))
    if args.skip_gateway:
        return
    print(f"GET /api/v1/agents/{{id}} for {args.seconds:g}s, {args.concurrency} workers ...",
          flush=True)
    without = await drive_get(False, args.seconds, args.concurrency)
    with_filter = await drive_get(True, args.seconds, args.concurrency)
    for label, (rps, p50, p99, errors) in (("without rate-limit filter", without),
                                           ("with rate-limit filter   ", with_filter)):
        print(f"  {label}: {rps:8.1f} req/s  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  errors {errors}")
    print(f"  throughput with/without: {with_filter[0] / without[0]:.2f}  "
          f"p50 with/without: {with_filter[1] / without[1]:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--decisions", type=int, default=20000)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--skip-gateway", action="store_true",
                        help="only the decision figures (no mesh is started)")
    asyncio.run(run(parser.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
