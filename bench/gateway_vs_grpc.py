"""Gateway REST vs direct gRPC: what does the Envoy hop cost on an authorized read?

Starts the real mesh (all services + Envoy) in-process, registers a tenant, creates agents, then
drives the same two calls (GetAgent, ListAgents) for a fixed time with N concurrent workers:

  * gateway REST  - HTTP/1.1 + JSON through Envoy (JWT check, scope RBAC, JSON<->gRPC transcoding)
  * direct gRPC   - straight to the agents service, with the metadata the gateway would add

and prints throughput, latency percentiles, CPU used per process and memory per process.
Nothing is asserted: this is a measuring tool, not a test.

    .venv/bin/python bench/gateway_vs_grpc.py [--seconds 5] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable

import grpc
import httpx2

from agentmesh.agents.v1 import agents_pb2, agents_pb2_grpc
from mesh.supervisor import Mesh, free_port

AGENT_COUNT = 50
PAGE_SIZE = 20
REQUEST_TIMEOUT = 10.0  # seconds; bounds every single call so a stuck request cannot hang a run
CLK_TCK = os.sysconf("SC_CLK_TCK")

# One attempt: returns None on success, or a short description of what went wrong.
Attempt = Callable[[], Awaitable[str | None]]


@dataclass
class Result:
    call: str  # "GetAgent" / "ListAgents"
    path: str  # "gateway REST" / "direct gRPC"
    generator: str  # which load generator produced the figures
    requests: int  # completed attempts, successful or not
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    error_kinds: Counter = field(default_factory=Counter)
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds per process while measuring

    @property
    def throughput(self) -> float:
        # Successful requests only: a fast stream of errors is not throughput.
        return (self.requests - self.errors) / self.seconds if self.seconds else 0.0


# --- measurement ---------------------------------------------------------------------------

def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation), NaN when there is nothing to rank."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


async def drive(attempt: Attempt, seconds: float, concurrency: int
                ) -> tuple[list[float], Counter, int, float]:
    """Runs `concurrency` closed-loop workers until the deadline.

    Returns (latencies of successes in ms, error kinds, attempts, elapsed seconds). A worker
    starts no new request after the deadline, so the run lasts `seconds` plus at most one
    request (itself bounded by REQUEST_TIMEOUT).
    """
    latencies: list[float] = []
    errors: Counter = Counter()
    attempts = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal attempts
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            try:
                problem = await attempt()
            except Exception as exc:  # noqa: BLE001 - any failure is counted, not raised
                problem = type(exc).__name__
            attempts += 1
            if problem:
                errors[problem] += 1
            else:
                latencies.append((time.perf_counter() - start) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, errors, attempts, time.perf_counter() - started


class CpuMeter:
    """CPU seconds (user+system) used by each mesh process and by the load generator."""

    def __init__(self, mesh: Mesh) -> None:
        self.pids = {c.name: c.process.pid for c in mesh.children if c.process}

    @staticmethod
    def _proc_cpu(pid: int) -> float:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return 0.0
        # Fields after the ")" that closes the command name; utime, stime are fields 14 and 15.
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def snapshot(self) -> dict[str, float]:
        times = os.times()
        sample = {name: self._proc_cpu(pid) for name, pid in self.pids.items()}
        sample["client"] = times.user + times.system  # this process: the Python load generator
        sample["wrk"] = times.children_user + times.children_system  # reaped subprocesses
        return sample

    @staticmethod
    def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        return {name: after[name] - before[name] for name in before}


async def measure(name: str, path: str, attempt: Attempt, args: argparse.Namespace,
                  meter: CpuMeter) -> Result:
    # Warm-up (discarded): opens the keep-alive connections, fills caches, lets Envoy fetch JWKS.
    await drive(attempt, min(1.0, args.seconds * 0.2), args.concurrency)
    before = meter.snapshot()
    latencies, errors, attempts, elapsed = await drive(attempt, args.seconds, args.concurrency)
    cpu = CpuMeter.delta(before, meter.snapshot())
    cpu.pop("wrk")
    latencies.sort()
    return Result(name, path, f"Python ({'httpx2' if 'REST' in path else 'grpc.aio'})",
                  attempts, sum(errors.values()), elapsed, percentile(latencies, 50),
                  percentile(latencies, 99), errors, cpu)


# wrk reports through this done() hook as one JSON line, so nothing has to be scraped from its
# human-readable output. Durations and latencies are in microseconds; errors.status counts
# responses with status >= 400.
WRK_REPORT = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_WRK {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, ' ..
    '"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


async def measure_wrk(wrk: str, url: str, token: str, args: argparse.Namespace,
                      meter: CpuMeter) -> Result | None:
    seconds = max(1, round(args.seconds))
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_REPORT)
    try:
        before = meter.snapshot()
        process = await asyncio.create_subprocess_exec(
            wrk, "-t2", f"-c{args.concurrency}", f"-d{seconds}s", "--timeout", "10s",
            "-H", f"Authorization: Bearer {token}", "-s", script.name, url,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        try:
            output, _ = await asyncio.wait_for(process.communicate(), seconds + 30)
        except TimeoutError:
            process.kill()
            await process.wait()
            print("wrk did not finish in time; no wrk figures", file=sys.stderr)
            return None
        cpu = CpuMeter.delta(before, meter.snapshot())
    finally:
        os.unlink(script.name)
    text = output.decode(errors="replace")
    line = next((ln for ln in text.splitlines() if ln.startswith("BENCH_WRK ")), None)
    if process.returncode != 0 or line is None:
        print(f"wrk failed (exit {process.returncode}):\n{text}", file=sys.stderr)
        return None
    report = json.loads(line.removeprefix("BENCH_WRK "))
    kinds = Counter({k: report[k] for k in ("connect", "read", "write", "status", "timeout")
                     if report[k]})
    # The Python client was idle while wrk ran: its CPU column would only be noise.
    cpu.pop("client")
    cpu["client"] = cpu.pop("wrk")
    return Result("GetAgent", "gateway REST", "wrk -t2", report["requests"],
                  sum(kinds.values()), report["duration_us"] / 1e6, report["p50_us"] / 1000,
                  report["p99_us"] / 1000, kinds, cpu)


# --- setup -----------------------------------------------------------------------------------

async def register_and_seed(http: httpx2.AsyncClient) -> tuple[str, str, str, str]:
    """A fresh tenant with AGENT_COUNT agents. Returns (token, tenant_id, user_id, agent_id)."""
    reply = await http.post("/api/v1/auth/register", json={
        "tenant_name": "bench", "email": f"bench-{uuid.uuid4().hex[:12]}@example.com",
        "password": "bench-password"})
    if reply.status_code not in (200, 201):
        raise RuntimeError(f"register: HTTP {reply.status_code}: {reply.text}")
    body = reply.json()
    token, tenant_id, user_id = body["access_token"], body["tenant"]["id"], body["user"]["id"]
    auth = {"Authorization": f"Bearer {token}"}
    agent_ids = []
    for i in range(AGENT_COUNT):
        reply = await http.post("/api/v1/agents", json={"name": f"agent-{i}"}, headers=auth)
        if reply.status_code not in (200, 201):
            raise RuntimeError(f"create agent-{i}: HTTP {reply.status_code}: {reply.text}")
        agent_ids.append(reply.json()["id"])
    return token, tenant_id, user_id, agent_ids[AGENT_COUNT // 2]


async def sanity_check(http: httpx2.AsyncClient, stub: agents_pb2_grpc.AgentServiceStub,
                       metadata: tuple, agent_id: str) -> str:
    """Both paths must return the same data, or the comparison is meaningless."""
    rest_get = (await http.get(f"/api/v1/agents/{agent_id}")).raise_for_status().json()
    rest_list = (await http.get("/api/v1/agents", params={"page_size": PAGE_SIZE})
                 ).raise_for_status().json()
    grpc_get = await stub.GetAgent(agents_pb2.GetAgentRequest(agent_id=agent_id),
                                   metadata=metadata, timeout=REQUEST_TIMEOUT)
    grpc_list = await stub.ListAgents(agents_pb2.ListAgentsRequest(page_size=PAGE_SIZE),
                                      metadata=metadata, timeout=REQUEST_TIMEOUT)
    if rest_get["id"] != agent_id or grpc_get.id != agent_id:
        raise RuntimeError("GetAgent returned a different agent")
    rest_items = len(rest_list.get("items", []))
    if rest_items != len(grpc_list.items) or rest_items != PAGE_SIZE:
        raise RuntimeError(f"ListAgents: {rest_items} items via REST, "
                           f"{len(grpc_list.items)} via gRPC, expected {PAGE_SIZE}")
    rest_bytes = len((await http.get(f"/api/v1/agents/{agent_id}")).content)
    return (f"sanity: GetAgent ok on both paths ({rest_bytes} B JSON vs "
            f"{grpc_get.ByteSize()} B protobuf); ListAgents returns {rest_items} items on both")


# --- report ----------------------------------------------------------------------------------

def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def fmt_ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}"


def print_report(results: list[Result], mesh: Mesh, args: argparse.Namespace) -> None:
    print(f"\n== results: {args.seconds:g}s per run, {args.concurrency} concurrent workers ==")
    header = (f"{'call':<11} {'path':<13} {'load generator':<17} {'requests':>9} "
              f"{'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    print(header)
    print("-" * len(header))
    for r in results:
        print(f"{r.call:<11} {r.path:<13} {r.generator:<17} {r.requests:>9} "
              f"{r.throughput:>9.0f} {fmt_ms(r.p50_ms):>8} {fmt_ms(r.p99_ms):>8} {r.errors:>7}")
    for r in results:
        if r.error_kinds:
            kinds = ", ".join(f"{k} x{n}" for k, n in r.error_kinds.most_common(5))
            print(f"  errors in {r.call} / {r.path} / {r.generator}: {kinds}")

    print("\n== gateway / direct (same Python client on both paths) ==")
    print("  throughput < 1 and p50 > 1 mean the gateway hop costs that much")
    python = {(r.call, r.path): r for r in results if r.generator.startswith("Python")}
    for call in ("GetAgent", "ListAgents"):
        gw, direct = python.get((call, "gateway REST")), python.get((call, "direct gRPC"))
        if not gw or not direct or not direct.throughput or not direct.p50_ms:
            continue
        print(f"  {call:<11} throughput x{gw.throughput / direct.throughput:.2f}   "
              f"p50 x{gw.p50_ms / direct.p50_ms:.2f}")
    print("  httpx2 costs the client more CPU per request than grpc.aio (see 'client' below), and\n"
          f"  on a shared {os.cpu_count()}-core machine that CPU is taken from the mesh: "
          "the ratio includes it")

    print("\n== CPU seconds used during each run (client = the load generator) ==")
    services = [c.name for c in mesh.children if c.name not in ("gateway", "agents", "identity")]
    cols = ["client", "gateway", "agents", "identity", "others", "total"]
    print(f"{'call':<11} {'path':<13} {'load generator':<17} "
          + " ".join(f"{c:>8}" for c in cols) + f" {'cores':>6}")
    for r in results:
        row = {k: r.cpu.get(k, 0.0) for k in ("client", "gateway", "agents", "identity")}
        row["others"] = sum(r.cpu.get(name, 0.0) for name in services)
        row["total"] = sum(row.values())
        busy = row["total"] / r.seconds if r.seconds else 0.0
        print(f"{r.call:<11} {r.path:<13} {r.generator:<17} "
              + " ".join(f"{row[c]:>8.2f}" for c in cols) + f" {busy:>6.2f}")
    print(f"  cores = total CPU seconds / wall seconds; this machine has {os.cpu_count()}")

    print("\n== memory (VmRSS) at the end ==")
    total = 0
    for child in mesh.children:
        pid = child.process.pid if child.process else None
        rss = rss_kib(pid) if pid else None
        total += rss or 0
        shown = f"{rss / 1024:.1f} MiB" if rss is not None else "gone"
        print(f"  {child.name:<13} pid {pid!s:<8} {shown:>10}")
    print(f"  {'mesh total':<13} {'':<12} {total / 1024:>10.1f} MiB")
    own = rss_kib(os.getpid())
    if own is not None:
        print(f"  {'(benchmark)':<13} pid {os.getpid():<8} {own / 1024:>6.1f} MiB  (not part of the mesh)")


# --- main ------------------------------------------------------------------------------------

async def run(args: argparse.Namespace) -> int:
    data_dir = Path(tempfile.mkdtemp(prefix="agentmesh-bench-"))
    mesh = Mesh(data_dir=data_dir, port=free_port(), quiet=True,
                rate_limit_per_minute=10_000_000)  # the gateway's limiter must not be measured
    keep_data = True  # until the run ends cleanly, the logs in data_dir are the diagnosis
    try:
        print(f"starting the mesh ({data_dir}) ...", flush=True)
        await mesh.start()
        base = f"http://127.0.0.1:{mesh.port}"
        # HTTP/1.1 keep-alive with one connection per worker, so no request waits for a socket.
        limits = httpx2.Limits(max_connections=args.concurrency,
                              max_keepalive_connections=args.concurrency)
        async with httpx2.AsyncClient(base_url=base, limits=limits,
                                     timeout=REQUEST_TIMEOUT) as http:
            token, tenant_id, user_id, agent_id = await register_and_seed(http)
            http.headers["Authorization"] = f"Bearer {token}"
            # What Envoy's jwt_authn forwards after verifying the token (claim_to_headers).
            metadata = (("x-agentmesh-tenant-id", tenant_id), ("x-agentmesh-user-id", user_id),
                        ("x-agentmesh-scopes", "*"))
            # One channel = one HTTP/2 connection multiplexing all workers, as a gRPC client
            # normally runs (Envoy likewise keeps a few HTTP/2 connections per upstream).
            async with grpc.aio.insecure_channel(f"127.0.0.1:{mesh.ports['agents']}") as channel:
                stub = agents_pb2_grpc.AgentServiceStub(channel)
                print(await sanity_check(http, stub, metadata, agent_id))
                print(f"load generator runs on this same {os.cpu_count()}-core machine as Envoy "
                      f"and all {len(mesh.children) - 1} services: it competes with them for "
                      "CPU, so read the figures as a comparison, not as capacity.", flush=True)

                get_path = f"/api/v1/agents/{agent_id}"
                list_params = {"page_size": PAGE_SIZE}
                get_request = agents_pb2.GetAgentRequest(agent_id=agent_id)
                list_request = agents_pb2.ListAgentsRequest(page_size=PAGE_SIZE)

                # The body is read but not parsed: the client's JSON work is not the gateway's.
                async def rest_get() -> str | None:
                    reply = await http.get(get_path)
                    return None if reply.status_code == 200 else f"HTTP {reply.status_code}"

                async def rest_list() -> str | None:
                    reply = await http.get("/api/v1/agents", params=list_params)
                    return None if reply.status_code == 200 else f"HTTP {reply.status_code}"

                async def grpc_call(method, request) -> str | None:
                    try:
                        await method(request, metadata=metadata, timeout=REQUEST_TIMEOUT)
                    except grpc.aio.AioRpcError as exc:
                        return f"gRPC {exc.code().name}"
                    return None

                async def grpc_get() -> str | None:
                    return await grpc_call(stub.GetAgent, get_request)

                async def grpc_list() -> str | None:
                    return await grpc_call(stub.ListAgents, list_request)

                meter = CpuMeter(mesh)
                results = []
                for call, path, attempt in (("GetAgent", "gateway REST", rest_get),
                                            ("GetAgent", "direct gRPC", grpc_get),
                                            ("ListAgents", "gateway REST", rest_list),
                                            ("ListAgents", "direct gRPC", grpc_list)):
                    print(f"measuring {call} via {path} ...", flush=True)
                    results.append(await measure(call, path, attempt, args, meter))

                # A Python HTTP client may saturate before Envoy does; wrk (C, multi-threaded)
                # shows what the gateway path sustains when the client is cheap.
                wrk = shutil.which("wrk")
                if wrk:
                    print("measuring GetAgent via gateway REST with wrk ...", flush=True)
                    found = await measure_wrk(wrk, base + get_path, token, args, meter)
                    if found:
                        results.append(found)
                else:
                    print("wrk not installed: gateway figures come from the Python client only")

        print_report(results, mesh, args)
        keep_data = any(r.errors for r in results)
        return 0
    finally:
        await mesh.stop()
        if keep_data:
            print(f"\nmesh state and logs kept in {data_dir}", file=sys.stderr)
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each measured run")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent workers")
    args = parser.parse_args()
    if args.seconds <= 0 or args.concurrency <= 0:
        parser.error("--seconds and --concurrency must be positive")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
