"""Scale-out on one machine: `agentmesh up --replicas 2 --database-url postgresql+psycopg://...`
runs two processes of every service on a fresh PostgreSQL database behind one Envoy, with the
global rate limit on and its counters in Redis. In one mesh:

* under load on agents, one agents replica is killed with SIGKILL: no request is lost beyond the
  ones in flight on it, which the client retries once; Envoy spreads calls over both replicas and
  stops sending to the dead one; the supervisor restarts it;
* with executions of a workflow waiting in both workflows replicas, one is killed: every
  execution still completes, each step once, including those started while it was down;
* a route limited to N per minute lets exactly N through although both governance replicas
  answer Envoy's rate-limit calls (one count in Redis, not one per replica).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx2
import pytest
import sqlalchemy as sa

from tests.conftest import RunningMesh, _free_port, read_until_up, register, stop_mesh

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(900)]
CLK_TCK = os.sysconf("SC_CLK_TCK")


def fresh_database(postgres_url: str) -> tuple[str, str]:
    """A new database on the local server for this run (runs never share state)."""
    name = f"agentmesh_scale_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    return name, postgres_url.rsplit("/", 1)[0] + "/" + name


def drop_database(postgres_url: str, name: str) -> None:
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


def start_replicated_mesh(data_dir: Path, database_url: str, replicas: int,
                          extra_env: dict[str, str] | None = None) -> RunningMesh:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "mesh.cli", "up", "--port", str(port), "--data-dir", str(data_dir),
         "--rate-limit", "1000000", "--replicas", str(replicas), "--database-url", database_url],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, **(extra_env or {})})
    up, output = read_until_up(process, timeout=400)
    if up:
        threading.Thread(target=process.stdout.read, daemon=True).start()  # keep draining
        return RunningMesh(f"http://127.0.0.1:{port}", data_dir, process)
    process.kill()
    raise RuntimeError("agentmesh up --replicas did not start:\n" + output)


def children(pid: int) -> dict[int, str]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    found = {}
    for child in map(int, out.split()):
        try:
            found[child] = Path(f"/proc/{child}/cmdline").read_text().replace("\0", " ")
        except OSError:
            pass
    return found


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Load:
    """Closed-loop workers on agents: create an agent, read it back, read a page. A request that
    fails (5xx or a dropped connection) is retried once, by the client; a retried create that
    had in fact been committed answers 409, which counts as done."""

    def __init__(self, mesh: RunningMesh, token: str, workers: int) -> None:
        self.mesh, self.token, self.workers = mesh, token, workers
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.first_failures: Counter = Counter()
        self.failure_bodies: list[str] = []
        self.lost: list[str] = []
        self.created: list[str] = []
        self.ok = 0
        self.threads = [threading.Thread(target=self._work, args=(i,)) for i in range(workers)]

    def _once(self, client: httpx2.Client, method: str, path: str, **kwargs) -> httpx2.Response | str:
        try:
            reply = client.request(method, path, **kwargs)
        except httpx2.HTTPError as error:
            return type(error).__name__
        if reply.status_code >= 500:
            with self.lock:
                self.failure_bodies.append(f"{method} {path}: {reply.status_code} {reply.text}")
            return f"{reply.status_code}"
        return reply

    def _call(self, client: httpx2.Client, method: str, path: str, done: set[int],
              **kwargs) -> httpx2.Response | None:
        reply = self._once(client, method, path, **kwargs)
        if isinstance(reply, str):
            with self.lock:
                self.first_failures[f"{method} {reply}"] += 1
            reply = self._once(client, method, path, **kwargs)  # the one retry
        if isinstance(reply, str) or reply.status_code not in done:
            with self.lock:
                self.lost.append(f"{method} {path}: {reply if isinstance(reply, str) else reply.text}")
            return None
        with self.lock:
            self.ok += 1
        return reply

    def _work(self, worker: int) -> None:
        with self.mesh.client(self.token) as client:
            n = 0
            while not self.stop.is_set():
                n += 1
                name = f"w{worker}-{n}-{uuid.uuid4().hex[:6]}"
                if self._call(client, "POST", "/api/v1/agents", {200, 409},
                              json={"name": name, "model": "gpt-4o"}) is not None:
                    with self.lock:
                        self.created.append(name)
                self._call(client, "GET", f"/api/v1/agents/{name}", {200})
                self._call(client, "GET", "/api/v1/agents?page_size=5", {200})

    def __enter__(self) -> "Load":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)


LIMITED_ROUTE = "/agentmesh.governance.v1.GovernanceService/GetRateLimits"
LIMITED_PER_MINUTE = 8


@pytest.fixture(scope="module")
def replicated(tmp_path_factory, postgres_url):
    name, database_url = fresh_database(postgres_url)
    env = {"AGENTMESH_GATEWAY_GLOBAL_RATE_LIMIT": "1",
           "AGENTMESH_RATE_LIMIT_DOMAIN": f"scale-{uuid.uuid4().hex[:8]}",  # this run's keys
           "AGENTMESH_REDIS_URL": os.environ.get("AGENTMESH_TEST_REDIS_URL",
                                                 "redis://127.0.0.1:6379/0"),
           # No limit on the load; one route limited, for the rate-limit test.
           "AGENTMESH_RATE_LIMIT_GLOBAL_PER_MINUTE": "0",
           "AGENTMESH_RATE_LIMIT_PER_IP_PER_MINUTE": "0",
           "AGENTMESH_RATE_LIMIT_PER_TENANT_PER_MINUTE": "0",
           "AGENTMESH_RATE_LIMIT_ROUTES": json.dumps({LIMITED_ROUTE: LIMITED_PER_MINUTE})}
    mesh = None
    try:
        mesh = start_replicated_mesh(tmp_path_factory.mktemp("replicated"), database_url, 2, env)
        yield mesh
    finally:
        if mesh is not None:
            stop_mesh(mesh)
        drop_database(postgres_url, name)


def replicas_of(mesh: RunningMesh, service: str) -> list[int]:
    return sorted(pid for pid, cmd in children(mesh.process.pid).items()
                  if cmd.rstrip().split(" serve ")[-1].startswith(f"{service} "))


def wait_restarted(mesh: RunningMesh, service: str, killed: int) -> None:
    """The supervisor restarts a killed replica (same port, so Envoy's cluster is intact)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        now = replicas_of(mesh, service)
        if len(now) == 2 and killed not in now:
            return
        time.sleep(1)
    raise AssertionError(f"the killed {service} replica was not restarted")


def test_two_replicas_on_postgres_lose_nothing_when_an_agents_replica_is_killed(replicated):
    mesh = replicated
    processes = children(mesh.process.pid)
    serving = [cmd for cmd in processes.values() if " serve " in cmd]
    assert len(serving) == 21  # two of each of the ten services; one live (several need NATS)
    assert sum("envoy" in cmd for cmd in processes.values()) == 1
    agents = replicas_of(mesh, "agents")
    assert len(agents) == 2
    tenant = register(mesh)
    before = {pid: cpu_seconds(pid) for pid in agents}
    workers = 6
    with Load(mesh, tenant.token, workers) as load:
        time.sleep(6)
        # Envoy balances over both replicas: each has done work.
        spent = {pid: cpu_seconds(pid) - before[pid] for pid in agents}
        assert all(seconds > 0.2 for seconds in spent.values()), spent
        done_before_kill = load.ok
        os.kill(agents[0], signal.SIGKILL)
        time.sleep(8)
    assert load.ok > done_before_kill + 20  # the load went on after the kill
    # Each request that failed succeeded when the client retried it once: nothing lost.
    assert load.lost == []
    # Every create the client saw succeed is there, once (names are unique per tenant).
    with mesh.client(tenant.token) as client:
        for agent in load.created:
            reply = client.get(f"/api/v1/agents/{agent}")
            assert reply.status_code == 200, reply.text
        total = client.get("/api/v1/agents?page_size=1").json()["total"]
    assert total == len(load.created)
    wait_restarted(mesh, "agents", agents[0])
    # Only requests in flight on the killed replica fail at first: at most one per worker. The
    # rest go to the live replica (Envoy retries a refused connection there, and its health
    # checks keep the dead one out of the rotation until its successor serves).
    first_failures = sum(load.first_failures.values())
    assert first_failures <= workers, (load.first_failures, load.failure_bodies[:3])


def _retrying(client: httpx2.Client, method: str, path: str, **kwargs) -> httpx2.Response:
    """A call retried while a replica is down (an execute carries its idempotency key)."""
    for _ in range(20):
        try:
            reply = client.request(method, path, **kwargs)
        except httpx2.HTTPError:
            time.sleep(0.5)
            continue
        if reply.status_code < 500:
            return reply
        time.sleep(0.5)
    raise AssertionError(f"{method} {path} kept failing")


def test_every_execution_completes_when_a_workflows_replica_is_killed(replicated):
    mesh = replicated
    tenant = register(mesh)
    workflows = replicas_of(mesh, "workflows")
    assert len(workflows) == 2
    steps = [
        {"id": "prep", "type": "STEP_TYPE_TRANSFORM", "transform": {"expression": "inputs"}},
        {"id": "ask", "type": "STEP_TYPE_APPROVAL", "depends_on": ["prep"], "approval": {}},
        {"id": "after", "type": "STEP_TYPE_TRANSFORM", "depends_on": ["ask"],
         "transform": {"expression": "steps.prep.output.n"}},
    ]
    with mesh.client(tenant.token) as client:
        created = client.post("/api/v1/workflows", json={"name": f"flow-{uuid.uuid4().hex[:8]}",
                                                         "steps": steps,
                                                         "outputs": {"n": "steps.after.output"}})
        assert created.status_code == 200, created.text
        workflow = created.json()
        assert client.post(f"/api/v1/workflows/{workflow['id']}/activate",
                           json={}).status_code == 200

        def start(n: int) -> str:
            reply = _retrying(client, "POST", f"/api/v1/workflows/{workflow['id']}/execute",
                              json={"inputs": {"n": n},
                                    "idempotency_key": f"{workflow['id']}-{n}"})
            assert reply.status_code == 200, reply.text
            return reply.json()["id"]

        def state(execution_id: str) -> dict:
            reply = _retrying(client, "GET", f"/api/v1/workflows/executions/{execution_id}")
            assert reply.status_code == 200, reply.text
            return reply.json()

        def wait(execution_id: str, until, timeout: float = 120) -> dict:
            deadline = time.monotonic() + timeout
            while True:
                body = state(execution_id)
                if until(body):
                    return body
                assert time.monotonic() < deadline, body
                time.sleep(0.2)

        waiting = lambda e: e["status"] == "EXECUTION_STATUS_WAITING_APPROVAL"
        first = [start(n) for n in range(10)]
        for execution_id in first:  # every interpreter is running in one replica or the other
            wait(execution_id, waiting)
        os.kill(workflows[0], signal.SIGKILL)
        second = [start(n) for n in range(10, 16)]  # while it is down or restarting
        wait_restarted(mesh, "workflows", workflows[0])
        for execution_id in [*first, *second]:
            wait(execution_id, waiting)
            # Approval is a message to the interpreter: it reaches it in whichever replica
            # runs it now (recovered after the kill, or the one that never died).
            reply = _retrying(client, "POST",
                              f"/api/v1/workflows/executions/{execution_id}/steps/ask/approve",
                              json={"comment": "go"})
            assert reply.status_code == 200, reply.text
        done = [wait(e, lambda e: e["status"] in ("EXECUTION_STATUS_COMPLETED",
                                                  "EXECUTION_STATUS_FAILED",
                                                  "EXECUTION_STATUS_CANCELLED"))
                for e in [*first, *second]]
    assert [d["status"] for d in done] == ["EXECUTION_STATUS_COMPLETED"] * 16, [
        (d["id"], d["status"], d.get("errors"), d.get("step_states")) for d in done
        if d["status"] != "EXECUTION_STATUS_COMPLETED"]
    assert [d["outputs"]["n"] for d in done] == list(range(16))
    for execution in done:  # each step ran once: replays came from DBOS checkpoints
        assert {s["step_id"]: s["attempts"] for s in execution["step_states"]} == \
            {"prep": 1, "ask": 1, "after": 1}, execution["step_states"]


def test_a_rate_limit_holds_across_governance_replicas(replicated):
    mesh = replicated
    governance = replicas_of(mesh, "governance")
    assert len(governance) == 2
    tenant = register(mesh)
    window = 60
    if window - time.time() % window < 15:  # never straddle a window
        time.sleep(window - time.time() % window + 0.5)
    before = {pid: cpu_seconds(pid) for pid in governance}
    with mesh.client(tenant.token) as client:
        codes = [client.get("/api/v1/governance/rate-limits").status_code
                 for _ in range(2 * LIMITED_PER_MINUTE)]
        other_route = client.get("/api/v1/governance/policies")
    # Both replicas answered Envoy's rate-limit calls...
    spent = {pid: cpu_seconds(pid) - before[pid] for pid in governance}
    assert all(seconds > 0 for seconds in spent.values()), spent
    # ...and one count held: exactly the limit went through, not the limit per replica.
    assert codes == [200] * LIMITED_PER_MINUTE + [429] * LIMITED_PER_MINUTE, codes
    assert other_route.status_code == 200, other_route.text  # the limit is the route's
