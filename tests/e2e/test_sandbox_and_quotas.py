"""Fair share through the real gateway (issue 21): a tenant's CPU-heavy input ends at its
deadline in the sandbox while another tenant's requests keep their latency; renderings that
would multiply memory are refused before they are built; a tenant at its WebSocket or resource
quota is refused with 429 while the others are not.

Each payload runs while a thread of another tenant calls `GET /api/v1/auth/me` and records its
latencies. The bar is 100 ms at p99 (twice the p99 of the same calls just before the payload
when the machine is already slower than that), and each call must stay far below the payload's
own duration (what the issue measured: 8.8 s behind a 9.8 s payload)."""

from __future__ import annotations

import asyncio
import json
import statistics
import threading
import time
import uuid
from pathlib import Path

import httpx2
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.conftest import assert_envelope, register, start_mesh, stop_mesh

SOCKET_QUOTA = 3
AGENT_QUOTA = 3
# Not a speed goal (bench/ holds those): a bar that a stall would cross. The failures this
# guards against held another tenant's calls for the whole payload (seconds); on 2 cores, with the
# sandbox worker busy on one, an unstalled p99 was seen at 20-110 ms in CI.
LATENCY_P99_MS = 250.0


@pytest.fixture(scope="module")
def quota_mesh(tmp_path_factory):
    running = start_mesh(tmp_path_factory.mktemp("fair"), extra_env={
        "AGENTMESH_LIVE_MAX_SOCKETS_PER_TENANT": str(SOCKET_QUOTA),
        "AGENTMESH_RESOURCE_QUOTAS": f"agent={AGENT_QUOTA}"})
    yield running
    stop_mesh(running)


MIN_SAMPLES = 20


class Latency:
    """Another tenant calling GET /api/v1/auth/me in a loop, from a thread, while a payload
    runs; its latencies in milliseconds."""

    def __init__(self, mesh, token: str) -> None:
        self.client = httpx2.Client(base_url=mesh.url, timeout=60,
                                   headers={"Authorization": f"Bearer {token}"})
        self.samples: list[float] = []
        self.failures: list[int] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            started = time.perf_counter()
            reply = self.client.get("/api/v1/auth/me")
            self.samples.append((time.perf_counter() - started) * 1000)
            if reply.status_code != 200:
                self.failures.append(reply.status_code)
            time.sleep(0.01)

    def __enter__(self) -> "Latency":
        for _ in range(5):  # warm: the connection and the token's first verification
            self.client.get("/api/v1/auth/me")
        self.baseline = []  # the same calls with no payload running, for the report
        for _ in range(30):
            started = time.perf_counter()
            self.client.get("/api/v1/auth/me")
            self.baseline.append((time.perf_counter() - started) * 1000)
            time.sleep(0.01)
        self.thread.start()
        time.sleep(0.3)
        return self

    def __exit__(self, *exc) -> None:
        # At least MIN_SAMPLES calls, even when the payload ended within a few of them (a
        # refused one ends in milliseconds; on a loaded machine a call takes ~20 ms).
        deadline = time.monotonic() + 10
        while len(self.samples) < MIN_SAMPLES and time.monotonic() < deadline:
            time.sleep(0.05)
        self.stop.set()
        self.thread.join(30)
        self.client.close()

    @property
    def p99(self) -> float:
        return statistics.quantiles(self.samples, n=100, method="inclusive")[98]

    def check(self, payload_seconds: float) -> None:
        assert not self.failures, self.failures
        assert len(self.samples) >= MIN_SAMPLES, self.samples
        worst = max(self.samples)
        print(f"other tenant's GET /auth/me: {len(self.samples)} calls, p50 "
              f"{statistics.median(self.samples):.1f} ms, p99 {self.p99:.1f} ms, max "
              f"{worst:.1f} ms, while the payload ran {payload_seconds:.2f} s (before it: p50 "
              f"{statistics.median(self.baseline):.1f} ms, max {max(self.baseline):.1f} ms)")
        # Never queued behind the payload (the failure: the whole payload's time)...
        assert worst < max(500.0, payload_seconds * 1000 / 4), self.samples
        # ...and no stall at p99 either (LATENCY_P99_MS). On a machine already that slow before
        # the payload (shared CI, other work), no worse than twice what the calls took just before.
        before = statistics.quantiles(self.baseline, n=100, method="inclusive")[98]
        assert self.p99 < max(LATENCY_P99_MS, 2 * before), (before, sorted(self.samples)[-10:])


def _tool(client, **tool) -> dict:
    tool.setdefault("name", f"tool-{uuid.uuid4().hex[:8]}")
    tool.setdefault("status", "TOOL_STATUS_ACTIVE")
    reply = client.post("/api/v1/tools", json=tool)
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_math_payload_is_refused_before_it_is_computed(quota_mesh):
    """`((9**1000)**1000)**10` took 9.8 s on the shared event loop: its size is known from its
    operands, so it is a 400 at once, without the CPU."""
    attacker, other = register(quota_mesh), register(quota_mesh, "globex")
    with quota_mesh.client(attacker.token) as client:
        tool = _tool(client, type="TOOL_TYPE_BUILTIN", builtin={"builtin_name": "math"})
        with Latency(quota_mesh, other.token) as latency:
            started = time.monotonic()
            reply = client.post(f"/api/v1/tools/{tool['id']}/execute", json={
                "arguments": {"expression": "((9**1000)**1000)**10"}})
            took = time.monotonic() - started
        body = assert_envelope(reply, 400, "INVALID_ARGUMENT")
        assert body["details"]["reason"] == "RESULT_NOT_REPRESENTABLE", body
        assert took < 2, took
        latency.check(took)
        assert client.post(f"/api/v1/tools/{tool['id']}/execute", json={
            "arguments": {"expression": "6 * 7"}}).json()["output"] == {"result": 42}


def test_a_cpu_heavy_builtin_times_out_in_the_sandbox_while_others_are_served(quota_mesh):
    """A builtin whose cost its input decides (an exponential JMESPath in json_transform) runs
    in a sandbox worker: at the tool's deadline (10 s) the worker is killed, the execution is
    TIMED_OUT, and another tenant is served meanwhile."""
    attacker, other = register(quota_mesh), register(quota_mesh, "globex")
    # Each `.[@,@][]` doubles the list: 23 of them is ~30 s of CPU (and a few hundred MiB at
    # most by the deadline), well past the 10 s deadline on any machine of this kind.
    expression = "length(x" + ".[@,@][]" * 23 + ")"
    with quota_mesh.client(attacker.token) as client:
        tool = _tool(client, type="TOOL_TYPE_BUILTIN", builtin={"builtin_name": "json_transform"})
        assert client.post(f"/api/v1/tools/{tool['id']}/execute", json={
            "arguments": {"expression": "length(@)", "data": [1, 2]}}).json()["output"] == {
                "result": 2}
        with Latency(quota_mesh, other.token) as latency:
            started = time.monotonic()
            reply = client.post(f"/api/v1/tools/{tool['id']}/execute", json={
                "arguments": {"expression": expression, "data": {"x": [1, 2, 3]}}})
            took = time.monotonic() - started
        assert reply.status_code == 200, reply.text
        execution = reply.json()
        assert execution["status"] == "TOOL_EXECUTION_STATUS_TIMED_OUT", execution
        assert 9 <= took < 14, took  # the builtin deadline is 10 s
        latency.check(took)
        # The worker was killed and replaced: the tool still answers.
        assert client.post(f"/api/v1/tools/{tool['id']}/execute", json={
            "arguments": {"expression": "length(@)", "data": [1]}}).json()["output"] == {
                "result": 1}


def test_jmespath_payload_ends_at_the_steps_timeout(quota_mesh):
    attacker, other = register(quota_mesh), register(quota_mesh, "globex")
    expression = "length(inputs.x" + ".[@,@][]" * 22 + ")"
    with quota_mesh.client(attacker.token) as client:
        workflow = client.post("/api/v1/workflows", json={
            "name": f"bomb-{uuid.uuid4().hex[:8]}", "steps": [
                {"id": "bomb", "type": "STEP_TYPE_TRANSFORM", "timeout": "1s",
                 "transform": {"expression": expression}}]})
        assert workflow.status_code == 200, workflow.text
        workflow_id = workflow.json()["id"]
        assert client.post(f"/api/v1/workflows/{workflow_id}/activate", json={}).status_code == 200
        with Latency(quota_mesh, other.token) as latency:
            started = time.monotonic()
            execution = client.post(f"/api/v1/workflows/{workflow_id}/execute",
                                    json={"inputs": {"x": [1, 2, 3]}}).json()
            while True:
                body = client.get(f"/api/v1/workflows/executions/{execution['id']}").json()
                if body["status"].endswith(("COMPLETED", "FAILED", "CANCELLED")):
                    break
                assert time.monotonic() - started < 30, body
                time.sleep(0.1)
            took = time.monotonic() - started
            # The other tenant's lists are served meanwhile, too.
            with quota_mesh.client(other.token) as others:
                assert others.get("/api/v1/workflows").status_code == 200
        assert body["status"] == "EXECUTION_STATUS_FAILED", body
        assert [e["code"] for e in body["errors"]] == ["TIMEOUT"], body["errors"]
        step = next(s for s in body["step_states"] if s["step_id"] == "bomb")
        assert step["status"] == "STEP_STATUS_FAILED"
        assert took < 6, took
        latency.check(took)
        # A transform that is not bounded still runs (in the sandbox) and completes.
        fine = client.post("/api/v1/workflows", json={
            "name": f"fine-{uuid.uuid4().hex[:8]}", "steps": [
                {"id": "sum", "type": "STEP_TYPE_TRANSFORM", "timeout": "5s",
                 "transform": {"expression": "{total: sum(inputs.x), n: length(inputs.x)}"}}]})
        assert client.post(f"/api/v1/workflows/{fine.json()['id']}/activate",
                           json={}).status_code == 200
        run = client.post(f"/api/v1/workflows/{fine.json()['id']}/execute",
                          json={"inputs": {"x": [1, 2, 3]}}).json()
        for _ in range(300):
            body = client.get(f"/api/v1/workflows/executions/{run['id']}").json()
            if body["status"].endswith(("COMPLETED", "FAILED")):
                break
            time.sleep(0.1)
        assert body["status"] == "EXECUTION_STATUS_COMPLETED", body
        assert body["outputs"] == {"total": 6, "n": 3}


def test_backtracking_patterns_and_exponential_schemas_do_not_stall_others(quota_mesh):
    attacker, other = register(quota_mesh), register(quota_mesh, "globex")
    with quota_mesh.client(attacker.token) as client:
        tool = _tool(client, type="TOOL_TYPE_BUILTIN", builtin={"builtin_name": "echo"},
                     input_schema={"type": "object", "properties": {
                         "s": {"type": "string", "pattern": "^(a+)+$"}}})
        slowest = 0.0
        with Latency(quota_mesh, other.token) as latency:
            started = time.monotonic()
            while time.monotonic() - started < 2:  # the payload, again and again
                for length in (27, 40, 5000):
                    sent = time.monotonic()
                    reply = client.post(f"/api/v1/tools/{tool['id']}/execute", json={
                        "arguments": {"s": "a" * length + "!"}})
                    slowest = max(slowest, time.monotonic() - sent)
                    body = assert_envelope(reply, 400, "INVALID_ARGUMENT")
                    assert body["details"]["reason"] == "ARGUMENTS_INVALID"
            took = time.monotonic() - started
        # Python's re: 7.2 s at 27 characters, doubling with each more.
        assert slowest < 0.5, slowest
        latency.check(took)
        assert client.post(f"/api/v1/tools/{tool['id']}/execute", json={
            "arguments": {"s": "aaaa"}}).json()["status"] == "TOOL_EXECUTION_STATUS_COMPLETED"
        # A schema whose references make validation exponential: validated in the sandbox,
        # the arguments refused at its deadline instead of the process stalling.
        recursive = _tool(client, type="TOOL_TYPE_BUILTIN", builtin={"builtin_name": "echo"},
                          input_schema={"type": "object", "properties": {"v": {"$ref": "#/$defs/n"}},
                                        "$defs": {"n": {"anyOf": [
                                            {"type": "array", "items": {"$ref": "#/$defs/n"},
                                             "minItems": 2},
                                            {"type": "array", "items": {"$ref": "#/$defs/n"}}]}}})
        nested: object = "leaf"
        for _ in range(40):
            nested = [nested]
        with Latency(quota_mesh, other.token) as latency:
            started = time.monotonic()
            reply = client.post(f"/api/v1/tools/{recursive['id']}/execute",
                                json={"arguments": {"v": nested}})
            took = time.monotonic() - started
        body = assert_envelope(reply, 400, "INVALID_ARGUMENT")
        assert body["details"]["reason"] == "ARGUMENTS_INVALID"
        assert took < 14, took  # the sandbox's deadline, 10 s (inline: 2^40 steps)
        latency.check(took)
        # What RE2 cannot match in linear time is refused when the schema is saved.
        for schema in ({"type": "string", "pattern": "^(a)\\1$"},
                       {"type": "object", "patternProperties": {"(?=x)": {}}}):
            reply = client.post("/api/v1/tools", json={
                "name": f"tool-{uuid.uuid4().hex[:8]}", "type": "TOOL_TYPE_BUILTIN",
                "builtin": {"builtin_name": "echo"}, "input_schema": {
                    "type": "object", "properties": {"s": schema}}})
            assert_envelope(reply, 400, "INVALID_ARGUMENT")


def _services_pid(mesh) -> int:
    """The `agentmesh serve` child of `agentmesh up` that hosts every service."""
    children = Path(f"/proc/{mesh.process.pid}/task/{mesh.process.pid}/children").read_text()
    for pid in children.split():
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if b"serve" in command:
            return int(pid)
    raise AssertionError(f"no services process among {children}")


def _memory_kb(pid: int) -> dict[str, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    return {line.split(":")[0]: int(line.split()[1]) for line in status.splitlines()
            if line.startswith(("VmRSS", "VmHWM"))}


def test_multiplying_renderings_are_refused_before_memory_grows(quota_mesh):
    tenant = register(quota_mesh)
    pid = _services_pid(quota_mesh)
    value = "x" * 100_000
    with quota_mesh.client(tenant.token) as client:
        name = f"tpl-{uuid.uuid4().hex[:8]}"
        created = client.post("/api/v1/templates", json={
            "name": name, "kind": "TEMPLATE_KIND_AGENT",
            "content": {"name": "bomb", "system_prompt": "{{a}}" * 1000},
            "parameters": [{"name": "a", "required": True}]})
        assert created.status_code == 200, created.text
        prompt = f"p-{uuid.uuid4().hex[:8]}"
        assert client.post("/api/v1/master-data/prompts", json={
            "name": prompt, "content": "{{a}}" * 1000}).status_code == 200
        before = _memory_kb(pid)
        reply = client.post(f"/api/v1/templates/{name}/instantiate",
                            json={"parameters": {"a": value}})
        body = assert_envelope(reply, 400, "INVALID_ARGUMENT")
        assert body["details"]["reason"] == "RENDERED_TOO_LARGE"
        assert body["details"]["limit_bytes"] == 1024 * 1024
        reply = client.post(f"/api/v1/master-data/prompts/{prompt}/render",
                            json={"variables": {"a": value}})
        body = assert_envelope(reply, 400, "INVALID_ARGUMENT")
        assert body["details"]["reason"] == "RENDERED_TOO_LARGE"
        after = _memory_kb(pid)
        print(f"services process: RSS {before['VmRSS'] // 1024} -> {after['VmRSS'] // 1024} MB, "
              f"peak {before['VmHWM'] // 1024} -> {after['VmHWM'] // 1024} MB")
        # 100 MB of text would have been built (the issue: 270 -> 817 MB).
        assert after["VmHWM"] - before["VmHWM"] < 30 * 1024, (before, after)
        assert after["VmRSS"] - before["VmRSS"] < 30 * 1024, (before, after)
        # Below the limit, the same template renders.
        small = client.post(f"/api/v1/templates/{name}/instantiate",
                            json={"parameters": {"a": "ab"}})
        assert small.status_code == 200, small.text
        assert small.json()["result"]["system_prompt"] == "ab" * 1000
        # Placeholders are counted when text is saved, before it is parsed.
        body = assert_envelope(client.post("/api/v1/master-data/prompts", json={
            "name": f"p-{uuid.uuid4().hex[:8]}", "content": "{{a}}" * 1001}), 400,
            "INVALID_ARGUMENT")
        assert body["details"]["reason"] == "TOO_MANY_PLACEHOLDERS"


def _ws(mesh, path: str) -> str:
    return mesh.url.replace("http://", "ws://") + path


def test_a_tenant_at_its_websocket_quota_is_refused_others_are_not(quota_mesh):
    tenant, other = register(quota_mesh), register(quota_mesh, "globex")
    auth = {"Authorization": f"Bearer {tenant.token}"}

    async def scenario():
        sockets = []
        for _ in range(SOCKET_QUOTA):
            socket = await connect(_ws(quota_mesh, "/ws/executions"), additional_headers=auth)
            assert json.loads(await socket.recv())["type"] == "state"
            sockets.append(socket)
        with pytest.raises(InvalidStatus) as refused:
            async with connect(_ws(quota_mesh, "/ws/executions"), additional_headers=auth):
                pass
        response = refused.value.response
        assert response.status_code == 429
        body = json.loads(response.body)
        assert body["error"] == "RESOURCE_EXHAUSTED" and body["correlation_id"]
        assert body["details"] == {"reason": "WEBSOCKET_QUOTA_EXCEEDED", "limit": SOCKET_QUOTA}
        # Another tenant is not affected.
        async with connect(_ws(quota_mesh, "/ws/executions"), additional_headers={
                "Authorization": f"Bearer {other.token}"}) as socket:
            assert json.loads(await socket.recv())["type"] == "state"
        # A closed socket frees its place.
        await sockets.pop().close()
        for _ in range(50):
            try:
                socket = await connect(_ws(quota_mesh, "/ws/executions"),
                                       additional_headers=auth)
                break
            except InvalidStatus:
                await asyncio.sleep(0.1)
        else:
            raise AssertionError("the freed place was never given back")
        sockets.append(socket)
        for socket in sockets:
            await socket.close()
    asyncio.run(scenario())


def test_a_tenant_at_its_resource_quota_is_refused_others_are_not(quota_mesh):
    tenant, other = register(quota_mesh), register(quota_mesh, "globex")
    with quota_mesh.client(tenant.token) as client:
        made = []
        for i in range(AGENT_QUOTA):
            reply = client.post("/api/v1/agents", json={"name": f"a{i}", "model": "gpt-4o"})
            assert reply.status_code == 200, reply.text
            made.append(reply.json()["id"])
        body = assert_envelope(client.post("/api/v1/agents", json={
            "name": "one-too-many", "model": "gpt-4o"}), 429, "RESOURCE_EXHAUSTED")
        assert body["details"]["reason"] == "RESOURCE_QUOTA_EXCEEDED"
        assert body["details"]["kind"] == "agent"
        assert body["details"]["limit"] == AGENT_QUOTA
        # Nothing half-written: the refused agent does not exist, the count is unchanged.
        assert client.get("/api/v1/agents").json()["total"] == AGENT_QUOTA
        assert client.get("/api/v1/agents/one-too-many").status_code == 404
        # Other kinds have their own quota.
        assert client.post("/api/v1/tools", json={
            "name": f"tool-{uuid.uuid4().hex[:8]}", "type": "TOOL_TYPE_BUILTIN",
            "builtin": {"builtin_name": "echo"}}).status_code == 200
    with quota_mesh.client(other.token) as client:
        reply = client.post("/api/v1/agents", json={"name": "a0", "model": "gpt-4o"})
        assert reply.status_code == 200, reply.text
    with quota_mesh.client(tenant.token) as client:
        assert client.delete(f"/api/v1/agents/{made[0]}").status_code == 200
        reply = client.post("/api/v1/agents", json={"name": "again", "model": "gpt-4o"})
        assert reply.status_code == 200, reply.text
