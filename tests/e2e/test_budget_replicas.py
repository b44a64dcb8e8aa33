"""A budget across replicas, through the real gateway (issue 25): `agentmesh up --replicas 2`
on PostgreSQL with the counters in Redis; a budget of N tokens lets the first interaction
through and refuses the next with 429 BUDGET_EXCEEDED, whichever agents and governance replicas
the two calls reach."""

from __future__ import annotations

import os
import uuid

import pytest

from tests.conftest import assert_envelope, register, stop_mesh
from tests.e2e.test_scale_out import drop_database, fresh_database, start_replicated_mesh

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def replicated(tmp_path_factory, postgres_url):
    name, database_url = fresh_database(postgres_url)
    env = {"AGENTMESH_REDIS_URL": os.environ.get("AGENTMESH_TEST_REDIS_URL",
                                                 "redis://127.0.0.1:6379/0"),
           "AGENTMESH_EGRESS_ALLOW": "127.0.0.1"}
    mesh = None
    try:
        mesh = start_replicated_mesh(tmp_path_factory.mktemp("budget-replicas"), database_url, 2,
                                     env)
        yield mesh
    finally:
        if mesh is not None:
            stop_mesh(mesh)
        drop_database(postgres_url, name)


def _ok(reply):
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_a_token_budget_holds_across_two_agents_replicas(replicated, model_server):
    owner = register(replicated)
    with replicated.client(owner.token) as client:
        script = model_server.script(f"s-{uuid.uuid4().hex[:8]}",
                                     [{"content": "one"}, {"content": "two"}, {"content": "3"}])
        _ok(client.post("/api/v1/master-data/secrets", json={
            "name": "key", "value": "sk-e2e", "secret_type": "SECRET_TYPE_API_KEY"}))
        model = _ok(client.post("/api/v1/master-data/models", json={
            "name": "m", "provider": "openai_compatible", "model_id": script,
            "endpoint_url": model_server.base_url, "secret_ref": "key"}))
        agent = _ok(client.post("/api/v1/agents", json={"name": "a", "model": model["name"]}))
        _ok(client.post(f"/api/v1/agents/{agent['id']}/activate", json={}))
        _ok(client.put("/api/v1/governance/budgets/tenant", json={"tokens_per_day": 5}))
        first = _ok(client.post(f"/api/v1/agents/{agent['id']}/interact",
                                json={"message": "hi"}))
        assert first["status"] == "CALL_STATUS_COMPLETED" and first["tokens"] > 5
        # Each refused call may reach either replica of agents and of governance.
        for _ in range(2):
            refused = client.post(f"/api/v1/agents/{agent['id']}/interact",
                                  json={"message": "again"})
            body = assert_envelope(refused, 429, "RESOURCE_EXHAUSTED")
            assert body["details"]["reason"] == "BUDGET_EXCEEDED"
            assert int(refused.headers["retry-after"]) > 0
        assert len(model_server.requests_for(script)) == 1
        budgets = _ok(client.get("/api/v1/governance/budgets"))["items"]
        assert int(budgets[0]["tokens_today"]) == first["tokens"]
