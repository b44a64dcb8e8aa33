"""What one `agentmesh up` holds: executions waiting for approval, WebSocket subscribers, watchers.

Starts the real mesh (`agentmesh up`'s supervisor in-process: every service in one Python
process plus Envoy, on 127.0.0.1, a temporary data directory, SQLite), registers a tenant over
REST and measures, through the gateway, each part asked for with `--parts`:

1. **waiting** (`--waiting 1000`): that many executions of `approve (approval) -> write
   (transform)` started (`POST /api/v1/workflows/{id}/execute`, `--concurrency` callers), then
   the list polled until all of them are EXECUTION_STATUS_WAITING_APPROVAL at once. Printed: the
   time to start them and until all wait, the services process's RSS before and with all
   waiting (per waiting execution = the difference / count), its CPU while they only wait, then
   the time to approve them all (`POST .../steps/approve/approve`, `--concurrency` callers) and
   until all are COMPLETED, and the RSS after.
2. **subscribers** (`--subscribers 1000`): that many WebSockets on `/ws/executions` (every
   execution event of the tenant), all open (each has read its first `state` message); one
   execution of the same workflow is started and approved, and each socket's arrival of its
   final (COMPLETED) event is timed against the event's `updated_at` (the execution's end, as
   the engine wrote it) and against the return of the approve call, both on this machine's
   clock. Printed: how many of the sockets got it, p50/p99/max of both delays, the RSS of the
   services process and of Envoy before and with all sockets open (per subscriber). The same
   with one socket first, as the floor.
3. **watch** (`--watch 200`): that many executions, `--watch-concurrency` at a time: the SSE
   watch stream (`GET /api/v1/workflows/executions/{id}/watch`) open, the execution waiting for
   approval, approve, and the final event's arrival on the stream timed against the approve
   call's return and against the event's `updated_at`. The issue's goal: the end of an execution
   seen within 20 ms p99 of it happening.

The limits that would stop this (docs/workflows.md "Limits and fair share",
docs/live-events.md) are raised for the run, and printed: live executions per tenant, the
queue's and the tenant's concurrency (an execution waiting for approval keeps its queue slot:
at the default 8 per tenant only 8 can wait at once), WebSockets per tenant. The receive times
are taken by this one Python process, which also reads every socket: with many subscribers the
last arrivals include the client's own time to read the earlier ones (its CPU is printed).
Nothing is asserted; the mesh's logs are kept when something failed.

    PYTHONPATH=. .venv/bin/python bench/scale.py [--parts waiting,subscribers,watch]
        [--waiting 1000] [--subscribers 1000] [--watch 200] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import shutil
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import httpx2 as httpx
from websockets.asyncio.client import connect

WAITING = "EXECUTION_STATUS_WAITING_APPROVAL"
COMPLETED = "EXECUTION_STATUS_COMPLETED"
ENDED = {COMPLETED, "EXECUTION_STATUS_FAILED", "EXECUTION_STATUS_CANCELLED"}
PARTS = ("waiting", "subscribers", "watch")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def stamp(text: str) -> float:
    """An RFC 3339 timestamp of the API (`...Z`, up to nanoseconds) as epoch seconds."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return found


def rss_mib(pid: int, tree: bool = False) -> float:
    total = 0
    for one in descendants(pid) if tree else [pid]:
        try:
            for line in open(f"/proc/{one}/status"):
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def threads(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Bench:
    def __init__(self, args: argparse.Namespace, mesh, http: httpx.AsyncClient, token: str):
        self.args = args
        self.mesh = mesh
        self.http = http
        self.token = token
        self.services = next(c.process.pid for c in mesh.children
                             if c.process is not None and "serve" in " ".join(c.argv))
        self.envoy = next(c.process.pid for c in mesh.children
                          if c.process is not None and c.name == "gateway")
        self.summary: list[tuple[str, str]] = []
        self.problems: list[str] = []

    def note(self, label: str, value: str) -> None:
        self.summary.append((label, value))

    def memory(self) -> str:
        return (f"services {rss_mib(self.services):.0f} MiB "
                f"(with its children {rss_mib(self.services, tree=True):.0f}), "
                f"{threads(self.services)} threads; Envoy {rss_mib(self.envoy):.0f} MiB")

    async def envoy_stats(self, prefix: str) -> dict[str, int]:
        """Envoy's counters and gauges under `prefix`, from its admin socket."""
        try:
            reader, writer = await asyncio.open_unix_connection(self.mesh.admin_socket)
            writer.write(f"GET /stats?filter=^{prefix} HTTP/1.1\r\nHost: localhost\r\n"
                         "Connection: close\r\n\r\n".encode())
            await writer.drain()
            text = (await reader.read()).decode(errors="replace")
            writer.close()
        except OSError:
            return {}
        found = {}
        for line in text.split("\r\n\r\n", 1)[-1].splitlines():
            name, _, value = line.partition(": ")
            if value.strip().isdigit():
                found[name[len(prefix):]] = int(value)
        return found

    # ---- the workflow ------------------------------------------------------------------------
    async def approval_workflow(self) -> str:
        steps = [
            {"id": "approve", "type": "STEP_TYPE_APPROVAL", "approval": {"message": "go?"}},
            {"id": "write", "type": "STEP_TYPE_TRANSFORM", "depends_on": ["approve"],
             "transform": {"expression": "inputs.n"}},
        ]
        reply = await self.http.post("/api/v1/workflows", json={
            "name": f"scale-{uuid.uuid4().hex[:8]}", "steps": steps})
        reply.raise_for_status()
        workflow = reply.json()["id"]
        (await self.http.post(f"/api/v1/workflows/{workflow}/activate", json={})).raise_for_status()
        return workflow

    async def start(self, workflow: str, n: int) -> str:
        reply = await self.http.post(f"/api/v1/workflows/{workflow}/execute",
                                     json={"inputs": {"n": n}})
        if reply.status_code != 200:
            raise RuntimeError(f"execute: {reply.status_code} {reply.text[:300]}")
        return reply.json()["id"]

    async def approve(self, execution: str) -> None:
        reply = await self.http.post(
            f"/api/v1/workflows/executions/{execution}/steps/approve/approve",
            json={"comment": "bench"})
        if reply.status_code != 200:
            raise RuntimeError(f"approve: {reply.status_code} {reply.text[:300]}")

    async def count(self, workflow: str, status: str) -> int:
        reply = await self.http.get(f"/api/v1/workflows/{workflow}/executions",
                                    params={"status": status, "page_size": 1})
        reply.raise_for_status()
        return int(reply.json().get("total", 0))

    async def wait_count(self, workflow: str, status: str, n: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            seen = await self.count(workflow, status)
            if seen >= n:
                return seen
            await asyncio.sleep(0.25)
        return seen

    async def wait_status(self, execution: str, status: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reply = await self.http.get(f"/api/v1/workflows/executions/{execution}")
            if reply.json().get("status") == status:
                return
            await asyncio.sleep(0.05)
        raise RuntimeError(f"{execution} never reached {status}")

    async def pool(self, items: list, work, concurrency: int) -> list[BaseException]:
        """Runs work(item) over items with `concurrency` workers; the exceptions met."""
        queue = list(reversed(items))
        failures: list[BaseException] = []

        async def worker() -> None:
            while queue:
                item = queue.pop()
                try:
                    await work(item)
                except Exception as error:   # noqa: BLE001 - counted and shown
                    failures.append(error)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return failures

    def show_failures(self, what: str, failures: list[BaseException]) -> None:
        if not failures:
            return
        kinds: dict[str, int] = {}
        for failure in failures:
            key = repr(failure)[:240]
            kinds[key] = kinds.get(key, 0) + 1
        self.problems.append(f"{what}: {len(failures)} failed")
        print(f"  {what}: {len(failures)} failed")
        for key, n in sorted(kinds.items(), key=lambda k: -k[1])[:5]:
            print(f"    {n} x {key}")

    # ---- 1. executions waiting for approval ---------------------------------------------------
    async def waiting(self) -> None:
        count, concurrency = self.args.waiting, self.args.concurrency
        print(f"\n[waiting] {count} executions of approve -> write, all waiting for approval; "
              f"{concurrency} concurrent callers", flush=True)
        workflow = await self.approval_workflow()
        await asyncio.sleep(1)
        before = rss_mib(self.services)
        print(f"  before: {self.memory()}", flush=True)
        ids: list[str] = []

        async def start_one(n: int) -> None:
            ids.append(await self.start(workflow, n))

        began = time.perf_counter()
        failures = await self.pool(list(range(count)), start_one, concurrency)
        started = time.perf_counter() - began
        self.show_failures("execute", failures)
        waiting = await self.wait_count(workflow, WAITING, len(ids), self.args.timeout)
        all_waiting = time.perf_counter() - began
        print(f"  started {len(ids)} in {started:.1f} s ({len(ids) / started:.0f}/s); "
              f"{waiting} waiting for approval after {all_waiting:.1f} s", flush=True)
        if waiting < len(ids):
            self.problems.append(f"only {waiting} of {len(ids)} reached WAITING_APPROVAL")
            for status in ("EXECUTION_STATUS_QUEUED", "EXECUTION_STATUS_RUNNING",
                           "EXECUTION_STATUS_FAILED"):
                print(f"    {status}: {await self.count(workflow, status)}")
        await asyncio.sleep(2)
        held = rss_mib(self.services)
        cpu_before, idle_began = cpu_seconds(self.services), time.perf_counter()
        await asyncio.sleep(self.args.idle)
        idle_cpu = (cpu_seconds(self.services) - cpu_before) / (time.perf_counter() - idle_began)
        per = (held - before) * 1024 / max(1, waiting)
        print(f"  all waiting: {self.memory()}")
        print(f"  per waiting execution: {per:.1f} KiB; services CPU while they wait "
              f"({self.args.idle:g} s): {idle_cpu * 100:.1f}% of a core", flush=True)

        began = time.perf_counter()
        failures = await self.pool(ids, self.approve, concurrency)
        approved = time.perf_counter() - began
        self.show_failures("approve", failures)
        done = await self.wait_count(workflow, COMPLETED, len(ids), self.args.timeout)
        all_done = time.perf_counter() - began
        await asyncio.sleep(2)
        after = rss_mib(self.services)
        print(f"  approved {len(ids) - len(failures)} in {approved:.1f} s "
              f"({len(ids) / approved:.0f}/s); {done} COMPLETED after {all_done:.1f} s")
        print(f"  after: {self.memory()}", flush=True)
        self.note(f"waiting: start {len(ids)} executions", f"{started:.1f} s "
                  f"({len(ids) / started:.0f}/s), all {waiting} waiting after {all_waiting:.1f} s")
        self.note("waiting: services RSS before / all waiting / after",
                  f"{before:.0f} / {held:.0f} / {after:.0f} MiB")
        self.note("waiting: per waiting execution", f"{per:.1f} KiB, idle CPU "
                  f"{idle_cpu * 100:.1f}% of a core while they wait")
        self.note(f"waiting: approve {len(ids)}, until all COMPLETED",
                  f"{approved:.1f} s / {all_done:.1f} s ({done} completed)")

    # ---- 2. WebSocket subscribers ----------------------------------------------------------------
    async def subscribers(self) -> None:
        count = self.args.subscribers
        print(f"\n[subscribers] {count} WebSockets on /ws/executions, one execution's end",
              flush=True)
        workflow = await self.approval_workflow()
        url = str(self.http.base_url).rstrip("/").replace("http://", "ws://") + "/ws/executions"
        headers = {"Authorization": f"Bearer {self.token}"}
        finals: dict[int, tuple[float, dict]] = {}
        sockets: dict[int, object] = {}
        readers: list[asyncio.Task] = []
        target: dict[str, str] = {}
        arrived = asyncio.Event()
        need = [0]
        messages = [0]   # every message any socket read, for the messages per socket per end

        async def read(index: int, ws) -> None:
            try:
                async for message in ws:
                    received = time.time()
                    messages[0] += 1
                    # the payload is parsed after the time is taken; only the target's end counts
                    if '"EXECUTION_STATUS_COMPLETED"' not in message:
                        continue
                    event = json.loads(message)
                    payload = event.get("payload", {})
                    if payload.get("execution_id") == target.get("id") and index not in finals:
                        finals[index] = (received, payload)
                        if len(finals) >= need[0]:
                            arrived.set()
            except Exception:   # noqa: BLE001 - a socket closed under us is counted as missing
                pass

        async def open_one(index: int) -> None:
            ws = await connect(url, additional_headers=headers,
                               open_timeout=self.args.open_timeout,
                               max_queue=64, ping_interval=None)
            first = json.loads(await asyncio.wait_for(ws.recv(), 60))
            if first.get("type") != "state":
                raise RuntimeError(f"first message {first}")
            sockets[index] = ws
            readers.append(asyncio.create_task(read(index, ws)))

        async def one_end(expected: int) -> tuple[list[float], list[float], int, float, float]:
            finals.clear()
            arrived.clear()
            need[0] = expected
            execution = await self.start(workflow, 0)
            target["id"] = execution
            await self.wait_status(execution, WAITING)
            await asyncio.sleep(0.5)   # the WAITING events delivered; the sockets are quiet
            client_cpu = time.process_time()
            messages[0] = 0
            await self.approve(execution)
            returned = time.time()
            try:
                await asyncio.wait_for(arrived.wait(), 30)
            except TimeoutError:
                pass
            client_cpu = time.process_time() - client_cpu
            per_socket = messages[0] / max(1, expected)
            from_end = [(r - stamp(p["updated_at"])) * 1000 for r, p in finals.values()]
            from_call = [(r - returned) * 1000 for r, _ in finals.values()]
            return from_end, from_call, len(finals), client_cpu, per_socket

        rows = []
        # the floor: one socket
        await open_one(-1)
        floor = await one_end(1)
        rows.append((1, *floor))
        await sockets.pop(-1).close()
        await asyncio.sleep(1)

        before, envoy_before = rss_mib(self.services), rss_mib(self.envoy)
        print(f"  before: {self.memory()}", flush=True)
        began = time.perf_counter()
        failures = await self.pool(list(range(count)), open_one, self.args.open_concurrency)
        opened = time.perf_counter() - began
        self.show_failures("open a WebSocket", failures)
        await asyncio.sleep(2)
        held, envoy_held = rss_mib(self.services), rss_mib(self.envoy)
        print(f"  {len(sockets)} open in {opened:.1f} s: {self.memory()}", flush=True)
        stats = await self.envoy_stats("cluster.live_ws.")
        print("  Envoy, the live_ws cluster: " + ", ".join(
            f"{name} {stats.get(name, '?')}" for name in (
                "upstream_cx_active", "upstream_cx_overflow", "upstream_rq_pending_active",
                "upstream_rq_pending_overflow", "circuit_breakers.default.cx_open")), flush=True)
        many = await one_end(len(sockets))
        rows.append((len(sockets), *many))
        per = (held - before) * 1024 / max(1, len(sockets))
        envoy_per = (envoy_held - envoy_before) * 1024 / max(1, len(sockets))
        print(f"  per subscriber: services {per:.1f} KiB, Envoy {envoy_per:.1f} KiB")
        print(f"  {'':>17}{'after updated_at (the end)':>30}{'after approve returned':>30}")
        print(f"  {'sockets':>8}{'got it':>9}" + f"{'p50':>10}{'p99':>10}{'max':>10}" * 2
              + f"{'client CPU':>12}{'msgs/socket':>13}")

        def ms(value: float) -> str:
            return f"{value:>8.1f}ms"

        for sockets_open, from_end, from_call, got, client_cpu, per_socket in rows:
            print(f"  {sockets_open:>8}{got:>9}"
                  + "".join(ms(v) for v in (percentile(from_end, 50), percentile(from_end, 99),
                                            max(from_end, default=math.nan),
                                            percentile(from_call, 50), percentile(from_call, 99),
                                            max(from_call, default=math.nan)))
                  + f"{client_cpu * 1000:>10.0f}ms{per_socket:>13.1f}")
        sys.stdout.flush()
        if many[2] < len(sockets):
            self.problems.append(f"only {many[2]} of {len(sockets)} sockets got the end")
        began = time.perf_counter()
        await asyncio.gather(*(ws.close() for ws in sockets.values()), return_exceptions=True)
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        await asyncio.sleep(2)
        print(f"  all closed in {time.perf_counter() - began:.1f} s: {self.memory()}", flush=True)
        _, from_end, from_call, got, _, _ = rows[-1]
        self.note(f"subscribers: {len(sockets)} of {count} open",
                  f"in {opened:.1f} s; per subscriber services {per:.1f} KiB, "
                  f"Envoy {envoy_per:.1f} KiB")
        self.note("subscribers: services / Envoy RSS before -> all open",
                  f"{before:.0f} -> {held:.0f} / {envoy_before:.0f} -> {envoy_held:.0f} MiB")
        self.note(f"subscribers: the end seen by {got} of {len(sockets)}",
                  f"p50/p99/max {percentile(from_end, 50):.1f}/{percentile(from_end, 99):.1f}/"
                  f"{max(from_end, default=math.nan):.1f} ms after updated_at, "
                  f"{percentile(from_call, 50):.1f}/{percentile(from_call, 99):.1f}/"
                  f"{max(from_call, default=math.nan):.1f} ms after approve returned")
        _, from_end, from_call, got, _, _ = rows[0]
        self.note("subscribers: one socket alone",
                  f"{from_end[0] if from_end else math.nan:.1f} ms after updated_at, "
                  f"{from_call[0] if from_call else math.nan:.1f} ms after approve returned")

    # ---- 3. SSE watchers ------------------------------------------------------------------------
    async def watch(self) -> None:
        count, concurrency = self.args.watch, self.args.watch_concurrency
        print(f"\n[watch] {count} executions watched over SSE, {concurrency} at a time: "
              "waiting -> approve -> the final event", flush=True)
        workflow = await self.approval_workflow()
        from_end: list[float] = []
        from_call: list[float] = []
        approve_ms: list[float] = []

        async def one(n: int) -> None:
            execution = await self.start(workflow, n)
            returned = None
            async with self.http.stream(
                    "GET", f"/api/v1/workflows/executions/{execution}/watch") as stream:
                if stream.status_code != 200:
                    raise RuntimeError(f"watch: {stream.status_code}")
                async for line in stream.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    received = time.time()
                    event = json.loads(line[5:])
                    status = event.get("status")
                    if status == WAITING and returned is None:
                        began = time.perf_counter()
                        await self.approve(execution)
                        returned = time.time()
                        approve_ms.append((time.perf_counter() - began) * 1000)
                    elif status in ENDED:
                        if status != COMPLETED or returned is None:
                            raise RuntimeError(f"ended {status} (approved: {returned})")
                        from_end.append((received - stamp(event["updated_at"])) * 1000)
                        from_call.append((received - returned) * 1000)
                        return
            raise RuntimeError("the stream ended without a final event")

        for n in range(min(3, count)):   # warm-up, not counted
            await one(n)
        from_end.clear(), from_call.clear(), approve_ms.clear()
        began = time.perf_counter()
        failures = await self.pool(list(range(count)), one, concurrency)
        took = time.perf_counter() - began
        self.show_failures("watch", failures)
        print(f"  {len(from_end)} of {count} in {took:.1f} s")
        print(f"  {'':<36}{'p50':>9}{'p99':>9}{'max':>9}")
        for label, values in (("final event after its updated_at", from_end),
                              ("final event after approve returned", from_call),
                              ("the approve call", approve_ms)):
            print(f"  {label:<36}{percentile(values, 50):>7.1f}ms{percentile(values, 99):>7.1f}ms"
                  f"{max(values, default=math.nan):>7.1f}ms")
        sys.stdout.flush()
        self.note(f"watch: {len(from_end)} of {count} ends seen ({concurrency} at a time)",
                  f"p50/p99/max {percentile(from_end, 50):.1f}/{percentile(from_end, 99):.1f}/"
                  f"{max(from_end, default=math.nan):.1f} ms after updated_at, "
                  f"{percentile(from_call, 50):.1f}/{percentile(from_call, 99):.1f}/"
                  f"{max(from_call, default=math.nan):.1f} ms after approve returned")
        p99 = percentile(from_end, 99)
        self.note("watch: goal, the end seen within 20 ms p99",
                  f"{'met' if p99 <= 20 else 'not met'} ({p99:.1f} ms after updated_at)")


async def run(args: argparse.Namespace) -> int:
    from mesh.supervisor import Mesh, free_port   # after the settings are in the environment

    data_dir = Path(tempfile.mkdtemp(prefix="agentmesh-bench-scale-"))
    mesh = Mesh(data_dir=data_dir, port=free_port(), quiet=True,
                rate_limit_per_minute=10_000_000)
    failed = True
    began = time.perf_counter()
    try:
        print(f"starting the mesh ({data_dir}) ...", flush=True)
        await mesh.start()
        base = f"http://127.0.0.1:{mesh.port}"
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=120) as http:
            reply = await http.post("/api/v1/auth/register", json={
                "tenant_name": "bench", "email": f"bench-{uuid.uuid4().hex[:8]}@example.com",
                "password": "correct-horse-1"})
            reply.raise_for_status()
            token = reply.json()["access_token"]
            http.headers["Authorization"] = f"Bearer {token}"
            bench = Bench(args, mesh, http, token)
            print(f"idle: {bench.memory()}; {os.cpu_count()} cores, load average "
                  f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
            for part in args.parts:
                await getattr(bench, part)()
            print("\nsummary (services = the one Python process hosting every service)")
            width = max(len(label) for label, _ in bench.summary) + 2
            for label, value in bench.summary:
                print(f"  {label:<{width}}{value}")
            for problem in bench.problems:
                print(f"  PROBLEM: {problem}")
            print(f"  ({time.perf_counter() - began:.0f} s in all; load average now "
                  f"{' '.join(f'{x:.2f}' for x in os.getloadavg())})")
            failed = bool(bench.problems)
        return 1 if failed else 0
    finally:
        await mesh.stop()
        if failed:
            print(f"\nmesh state and logs kept in {data_dir}", file=sys.stderr)
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", type=lambda v: [p.strip() for p in v.split(",") if p.strip()],
                        default=list(PARTS), help="any of waiting,subscribers,watch")
    parser.add_argument("--waiting", type=int, default=1000)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--watch", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16,
                        help="concurrent callers starting and approving (waiting)")
    parser.add_argument("--open-concurrency", type=int, default=32,
                        help="WebSockets being opened at once (subscribers)")
    parser.add_argument("--open-timeout", type=float, default=15.0,
                        help="seconds a WebSocket's opening handshake may take (subscribers)")
    parser.add_argument("--watch-concurrency", type=int, default=1)
    parser.add_argument("--idle", type=float, default=5.0,
                        help="seconds the services' CPU is sampled while every execution waits")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds to wait for all executions to reach a status")
    args = parser.parse_args()
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    # Sockets: every WebSocket is a descriptor here, in Envoy and in the services process
    # (they inherit this process's limit).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, min(hard, 65536) if hard != resource.RLIM_INFINITY else 65536)
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    # The limits that would stop the measurement, raised for this run only (the services read
    # them from the environment they inherit).
    live = max(args.waiting, args.subscribers, args.watch) + 64
    raised = {
        "AGENTMESH_TENANT_MAX_LIVE_EXECUTIONS": live,
        "AGENTMESH_WORKFLOW_QUEUE_CONCURRENCY": max(64, live),
        "AGENTMESH_WORKFLOW_TENANT_CONCURRENCY": max(8, live),
        "AGENTMESH_LIVE_MAX_SOCKETS_PER_TENANT": max(100, args.subscribers + 16),
        "AGENTMESH_ACCESS_TOKEN_TTL_SECONDS": 4 * 3600,
    }
    for name, value in raised.items():
        os.environ[name] = str(value)
    print("raised for this run: " + ", ".join(f"{k}={v}" for k, v in raised.items())
          + f"; RLIMIT_NOFILE {want}", flush=True)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
