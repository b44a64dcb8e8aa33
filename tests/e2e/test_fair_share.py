"""Fair share through the real gateway (issue 21): a tenant trying to stall the workflow engine
— a workflow that calls itself, a recursion stored before that was refused, an exponential
fan-out, a backlog of slow executions, too many executions and schedules — while a second
tenant measures how long its own CRITICAL executions take to leave QUEUED. The mesh runs with
small limits (its own fixture) so the caps are reached in seconds."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid

import pytest

from tests.conftest import assert_envelope, register, start_mesh, stop_mesh

LIMITS = {"AGENTMESH_WORKFLOW_MAX_DEPTH": "3", "AGENTMESH_WORKFLOW_MAX_DESCENDANTS": "10",
          "AGENTMESH_WORKFLOW_TENANT_CONCURRENCY": "2",
          "AGENTMESH_WORKFLOW_QUEUE_CONCURRENCY": "8",
          "AGENTMESH_TENANT_MAX_LIVE_EXECUTIONS": "12", "AGENTMESH_TENANT_MAX_SCHEDULES": "3",
          "AGENTMESH_SCHEDULE_MIN_INTERVAL_SECONDS": "30"}
ENDED = {"EXECUTION_STATUS_COMPLETED", "EXECUTION_STATUS_FAILED", "EXECUTION_STATUS_CANCELLED"}


@pytest.fixture(scope="module")
def limited_mesh(tmp_path_factory):
    running = start_mesh(tmp_path_factory.mktemp("fair-share"), extra_env=LIMITS)
    yield running
    stop_mesh(running)


def _slug() -> str:
    return f"w-{uuid.uuid4().hex[:8]}"


def _create(client, steps: list[dict], slug: str | None = None) -> dict:
    slug = slug or _slug()
    reply = client.post("/api/v1/workflows", json={"name": slug, "slug": slug, "steps": steps})
    assert reply.status_code == 200, reply.text
    reply = client.post(f"/api/v1/workflows/{slug}/activate", json={})
    assert reply.status_code == 200, reply.text
    return reply.json()


def _sub(step_id: str, target: str) -> dict:
    return {"id": step_id, "type": "STEP_TYPE_SUB_WORKFLOW", "sub_workflow": {"workflow_id": target}}


def _leaf(client) -> dict:
    return _create(client, [{"id": "t", "type": "STEP_TYPE_TRANSFORM",
                             "transform": {"expression": "`1`"}}])


def _execute(client, slug: str, **body) -> dict:
    reply = client.post(f"/api/v1/workflows/{slug}/execute", json=body)
    assert reply.status_code == 200, reply.text
    return reply.json()


def _wait(client, execution_id: str, until=lambda e: e["status"] in ENDED,
          timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        reply = client.get(f"/api/v1/workflows/executions/{execution_id}")
        assert reply.status_code == 200, reply.text
        if until(reply.json()):
            return reply.json()
        assert time.monotonic() < deadline, reply.json()
        time.sleep(0.05)


def _executions(client, slug: str) -> list[dict]:
    reply = client.get(f"/api/v1/workflows/{slug}/executions", params={"page_size": 100})
    assert reply.status_code == 200, reply.text
    return reply.json()["items"]


class Bystander:
    """The other tenant: every 0.3 s it starts a CRITICAL execution and measures how long it
    stays QUEUED, until stopped."""

    def __init__(self, mesh) -> None:
        self.tenant = register(mesh, "bystander")
        self.client = mesh.client(self.tenant.token)
        self.slug = _leaf(self.client)["slug"]
        self.waits: list[float] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._measure, daemon=True)

    def _measure(self) -> None:
        while not self.stopped.is_set():
            begun = time.monotonic()
            execution = _execute(self.client, self.slug, priority="EXECUTION_PRIORITY_CRITICAL")
            _wait(self.client, execution["id"], lambda e: e["status"] != "EXECUTION_STATUS_QUEUED",
                  timeout=30)
            self.waits.append(time.monotonic() - begun)
            self.stopped.wait(0.3)

    def __enter__(self) -> "Bystander":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        deadline = time.monotonic() + 10
        while len(self.waits) < 3 and time.monotonic() < deadline:  # a few samples at least
            time.sleep(0.1)
        self.stopped.set()
        self.thread.join(40)
        self.client.close()
        assert self.waits, "the bystander never started an execution"
        assert max(self.waits) < 1.0, self.waits


def _refusal(reply, status: int, reason: str) -> dict:
    """The envelope of a 400 (INVALID_ARGUMENT) or 429 (RESOURCE_EXHAUSTED), with its reason."""
    body = assert_envelope(reply, status, {400: "INVALID_ARGUMENT",
                                           429: "RESOURCE_EXHAUSTED"}[status])
    assert body["details"]["reason"] == reason, body
    return body


def _codes(execution: dict) -> list[str]:
    return [e["code"] for e in execution.get("errors", [])]


def test_a_self_calling_workflow_is_refused_and_a_stored_recursion_stops_at_the_depth_cap(
        limited_mesh):
    attacker = register(limited_mesh, "attacker")
    with Bystander(limited_mesh) as bystander, limited_mesh.client(attacker.token) as client:
        slug = _slug()
        reply = client.post("/api/v1/workflows", json={"name": slug, "slug": slug,
                                                       "steps": [_sub("again", slug)]})
        body = _refusal(reply, 400, "WORKFLOW_CYCLE")
        assert body["details"]["path"] == f"{slug} -> {slug}"
        assert body["details"]["field_violations"][0]["field"] == \
            "steps.again.sub_workflow.workflow_id"
        # The same through an update, and through another workflow.
        workflow = _leaf(client)
        reply = client.put(f"/api/v1/workflows/{workflow['slug']}",
                           json={"steps": [_sub("again", workflow["id"])]})
        _refusal(reply, 400, "WORKFLOW_CYCLE")
        caller = _create(client, [_sub("call", workflow["slug"])])
        reply = client.put(f"/api/v1/workflows/{workflow['slug']}",
                           json={"steps": [_sub("back", caller["slug"])]})
        body = _refusal(reply, 400, "WORKFLOW_CYCLE")
        assert body["details"]["path"] == \
            f"{workflow['slug']} -> {caller['slug']} -> {workflow['slug']}"

        # A recursion stored before the check existed (written into the table here): three
        # roots of it recurse to the depth cap and end FAILED, each level saying why.
        _store_self_call(limited_mesh, workflow["id"], workflow["slug"])
        roots = [_execute(client, workflow["slug"]) for _ in range(3)]
        for root in roots:
            done = _wait(client, root["id"])
            assert done["status"] == "EXECUTION_STATUS_FAILED"
            assert _codes(done) == ["SUB_WORKFLOW_DEPTH_EXCEEDED"]
        runs = _executions(client, workflow["slug"])
        assert len(runs) == 3 * (3 + 1)  # each root and three levels below it
        assert {run["status"] for run in runs} == {"EXECUTION_STATUS_FAILED"}
    assert len(bystander.waits) >= 3


def _store_self_call(mesh, workflow_id: str, slug: str) -> None:
    import json

    steps = json.dumps([_sub("again", slug)])
    with sqlite3.connect(mesh.data_dir / "workflows.db", timeout=30) as db:
        for table, column, key in (("workflows", "definition", "id"),
                                   ("workflow_versions", "workflow", "workflow_id")):
            db.execute(f"UPDATE {table} SET {column} = json_set({column}, '$.steps', json(?)) "
                       f"WHERE {key} = ?", (steps, workflow_id))


def test_an_exponential_fan_out_stops_at_its_cap(limited_mesh):
    attacker = register(limited_mesh, "attacker")
    with Bystander(limited_mesh) as bystander, limited_mesh.client(attacker.token) as client:
        # Each level runs two copies of the next: 2 + 4 + 8 = 14 children; the cap is 10.
        levels = [_leaf(client)]
        for _ in range(3):
            target = levels[-1]["slug"]
            levels.append(_create(client, [
                {"id": "fan", "type": "STEP_TYPE_PARALLEL", "parallel": {"branches": [
                    {"name": "a", "step_ids": ["a"]}, {"name": "b", "step_ids": ["b"]}]}},
                _sub("a", target), _sub("b", target)]))
        root = _execute(client, levels[-1]["slug"])
        done = _wait(client, root["id"])
        assert done["status"] == "EXECUTION_STATUS_FAILED"
        assert "SUB_WORKFLOW_FANOUT_EXCEEDED" in _codes(done)
        children = sum(len(_executions(client, level["slug"])) for level in levels[:-1])
        assert children == 10
    assert len(bystander.waits) >= 3


def test_a_backlog_and_the_quotas_stay_within_the_tenant(limited_mesh):
    """A tenant fills its share of the queue and its execution quota with executions that wait
    for an approval: the next one is 429, another tenant's executions start within a second
    all along, and schedules are refused past their floor and the tenant's number."""
    attacker = register(limited_mesh, "attacker")
    with Bystander(limited_mesh) as bystander, limited_mesh.client(attacker.token) as client:
        slow = _create(client, [{"id": "ask", "type": "STEP_TYPE_APPROVAL", "approval": {}}])
        started = [_execute(client, slow["slug"]) for _ in range(12)]
        reply = client.post(f"/api/v1/workflows/{slow['slug']}/execute", json={})
        body = _refusal(reply, 429, "EXECUTION_QUOTA_EXCEEDED")
        assert body["details"]["limit"] == 12
        deadline = time.monotonic() + 10
        while [e["status"] for e in _executions(client, slow["slug"])].count(
                "EXECUTION_STATUS_WAITING_APPROVAL") < 2:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(1.0)  # and no more start
        statuses = [e["status"] for e in _executions(client, slow["slug"])]
        assert statuses.count("EXECUTION_STATUS_WAITING_APPROVAL") == 2  # the tenant's share
        assert statuses.count("EXECUTION_STATUS_QUEUED") == 10

        reply = client.post(f"/api/v1/workflows/{slow['slug']}/schedules",
                            json={"cron": "* * * * * *"})
        body = _refusal(reply, 400, "SCHEDULE_TOO_FREQUENT")
        assert body["details"]["field_violations"][0]["field"] == "cron"
        for _ in range(3):
            reply = client.post(f"/api/v1/workflows/{slow['slug']}/schedules",
                                json={"cron": "0 3 * * *"})
            assert reply.status_code == 200, reply.text
        reply = client.post(f"/api/v1/workflows/{slow['slug']}/schedules",
                            json={"cron": "0 4 * * *"})
        _refusal(reply, 429, "SCHEDULE_QUOTA_EXCEEDED")
        # The bystander is unaffected: it may still schedule (and it has been executing).
        reply = bystander.client.post(f"/api/v1/workflows/{bystander.slug}/schedules",
                                      json={"cron": "0 3 * * *"})
        assert reply.status_code == 200, reply.text
        for execution in started:
            client.post(f"/api/v1/workflows/executions/{execution['id']}/cancel", json={})
    assert len(bystander.waits) >= 3


def test_an_import_cannot_bring_a_cycle_in(limited_mesh):
    """An import saves workflows through the same create: the workflow that would close the
    cycle fails (its result names the reason), the one before it is imported."""
    importer = register(limited_mesh, "importer")
    bundle = {"kind": "agentmesh.bundle", "version": 1, "workflows": [
        {"name": "ping", "slug": "ping", "steps": [_sub("call", "pong")]},
        {"name": "pong", "slug": "pong", "steps": [_sub("call", "ping")]}]}
    with limited_mesh.client(importer.token) as client:
        reply = client.post("/api/v1/integration/import", json={"data": bundle})
        assert reply.status_code == 200, reply.text
        result = reply.json()
    assert result["created"] == 1 and result["failed"] == 1, result
    created, failed = result["results"]
    assert (created["name"], created["action"]) == ("ping", "created")
    # The import's result carries the owning service's answer as text (no reason field):
    # the refused workflow and the path it would have closed.
    assert (failed["name"], failed["action"]) == ("pong", "failed")
    assert "pong -> ping -> pong" in failed["error"]
