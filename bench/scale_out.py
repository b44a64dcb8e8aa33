"""GET-agent throughput through the gateway with 1 and 2 replicas per service, on PostgreSQL.

For each replica count, in one run: a fresh PostgreSQL database, the replicated mesh
(`mesh.supervisor.ReplicatedMesh`, what `agentmesh up --replicas N --database-url ...` runs: N
processes of every service, one Envoy balancing over them), a tenant with 50 agents, then
`GET /api/v1/agents/{id}` over those agents for a fixed time with wrk (or Python workers if wrk
is missing). Prints requests/s, p50/p99 latency, errors and the CPU seconds each agents replica
spent, which shows the load was spread. Nothing is asserted: a figure for the record.

    .venv/bin/python bench/scale_out.py [--seconds 10] [--concurrency 16]
        [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/test]

On a 2-core machine shared with the load generator, Envoy and twenty service processes, a second
replica cannot add CPU: expect little gain or a loss. The point is that the topology works and
is measured the same way it would be on real nodes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx2
import sqlalchemy as sa

from mesh.supervisor import ReplicatedMesh, free_port

AGENTS = 50
CLK_TCK = os.sysconf("SC_CLK_TCK")
WRK_SCRIPT = r"""
local ids = {}
for id in string.gmatch(os.getenv("BENCH_IDS"), "[^,]+") do table.insert(ids, id) end
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/api/v1/agents/" .. ids[(n % #ids) + 1])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_WRK {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "errors": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def fresh_database(postgres: str) -> tuple[str, str]:
    name = f"agentmesh_bench_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(postgres, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    engine.dispose()
    return name, postgres.rsplit("/", 1)[0] + "/" + name


def drop_database(postgres: str, name: str) -> None:
    engine = sa.create_engine(postgres, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    engine.dispose()


async def seed(url: str) -> tuple[str, list[str]]:
    async with httpx2.AsyncClient(base_url=url, timeout=30) as client:
        reply = await client.post("/api/v1/auth/register", json={
            "tenant_name": "bench", "email": f"bench-{uuid.uuid4().hex[:8]}@example.com",
            "password": "correct-horse-1"})
        reply.raise_for_status()
        token = reply.json()["access_token"]
        client.headers["Authorization"] = f"Bearer {token}"
        ids = []
        for i in range(AGENTS):
            created = await client.post("/api/v1/agents", json={"name": f"bench-{i}"})
            created.raise_for_status()
            ids.append(created.json()["id"])
    return token, ids


async def load_wrk(wrk: str, url: str, token: str, ids: list[str], seconds: int,
                   concurrency: int) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT)
    try:
        process = await asyncio.create_subprocess_exec(
            wrk, "-t2", f"-c{concurrency}", f"-d{seconds}s", "--timeout", "10s",
            "-H", f"Authorization: Bearer {token}", "-s", script.name, url,
            env={**os.environ, "BENCH_IDS": ",".join(ids)},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        output, _ = await asyncio.wait_for(process.communicate(), seconds + 60)
    finally:
        os.unlink(script.name)
    line = next(ln for ln in output.decode().splitlines() if ln.startswith("BENCH_WRK "))
    report = json.loads(line.removeprefix("BENCH_WRK "))
    return {"generator": "wrk -t2", "requests": report["requests"],
            "seconds": report["duration_us"] / 1e6, "p50_ms": report["p50_us"] / 1000,
            "p99_ms": report["p99_us"] / 1000, "errors": report["errors"]}


async def load_python(url: str, token: str, ids: list[str], seconds: int,
                      concurrency: int) -> dict:
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds

    async def worker(client: httpx2.AsyncClient, offset: int) -> None:
        nonlocal errors
        n = offset
        while time.monotonic() < deadline:
            n += 1
            started = time.perf_counter()
            try:
                reply = await client.get(f"/api/v1/agents/{ids[n % len(ids)]}")
                ok = reply.status_code == 200
            except httpx2.HTTPError:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - started)
            else:
                errors += 1

    started = time.monotonic()
    async with httpx2.AsyncClient(base_url=url, timeout=10,
                                 headers={"Authorization": f"Bearer {token}"}) as client:
        await asyncio.gather(*(worker(client, i) for i in range(concurrency)))
    latencies.sort()
    pick = (lambda p: latencies[min(len(latencies) - 1, int(len(latencies) * p))] * 1000
            if latencies else 0.0)
    return {"generator": "Python httpx2", "requests": len(latencies) + errors,
            "seconds": time.monotonic() - started, "p50_ms": pick(0.5), "p99_ms": pick(0.99),
            "errors": errors}


async def run(replicas: int, args: argparse.Namespace) -> dict:
    name, database_url = fresh_database(args.postgres)
    data_dir = Path(tempfile.mkdtemp(prefix=f"agentmesh-scale-{replicas}-"))
    mesh = ReplicatedMesh(data_dir=data_dir, port=free_port(), rate_limit_per_minute=10**8,
                          quiet=True, isolation="process", replicas=replicas,
                          database_url=database_url)
    try:
        print(f"starting {replicas} replica(s) of every service on {name}…", file=sys.stderr)
        await mesh.start()
        url = f"http://127.0.0.1:{mesh.port}"
        token, ids = await seed(url)
        agents = {c.name: c.process.pid for c in mesh.children if c.name.startswith("agents-")}
        before = {n: cpu_seconds(pid) for n, pid in agents.items()}
        wrk = shutil.which("wrk")
        if wrk:
            result = await load_wrk(wrk, url, token, ids, args.seconds, args.concurrency)
        else:
            result = await load_python(url, token, ids, args.seconds, args.concurrency)
        result["agents_cpu"] = {n: round(cpu_seconds(pid) - before[n], 2)
                                for n, pid in agents.items()}
        result["replicas"] = replicas
        shutil.rmtree(data_dir, ignore_errors=True)  # kept, with the logs, when anything failed
        return result
    finally:
        await mesh.stop()
        drop_database(args.postgres, name)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--postgres", default=os.environ.get(
        "AGENTMESH_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    args = parser.parse_args()
    results = [await run(replicas, args) for replicas in (1, 2)]
    print(f"\nGET /api/v1/agents/{{id}} through Envoy, PostgreSQL, {args.seconds}s, "
          f"{args.concurrency} connections, {os.cpu_count()} cores")
    print(f"{'replicas':>8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}  "
          f"{'generator':<13} CPU s per agents replica")
    for r in results:
        rate = (r["requests"] - r["errors"]) / r["seconds"]
        print(f"{r['replicas']:>8} {rate:>9.0f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} "
              f"{r['errors']:>7}  {r['generator']:<13} {r['agents_cpu']}")
    base = results[0]
    ratio = ((results[1]["requests"] - results[1]["errors"]) / results[1]["seconds"]) / max(
        1e-9, (base["requests"] - base["errors"]) / base["seconds"])
    print(f"2 replicas / 1 replica: {ratio:.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
