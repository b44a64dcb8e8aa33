"""`agentmesh up --database-url postgresql+psycopg://...` with one replica runs every service in
one process, as on SQLite (their calls to each other in-process, mesh.runtime.local), on the
shared PostgreSQL database: a workflow runs through the gateway and governance decides it."""

from __future__ import annotations

import pytest

from tests.conftest import register, stop_mesh
from tests.e2e.test_scale_out import (children, drop_database, fresh_database,
                                      start_replicated_mesh)

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(600)]

STEPS = [
    {"id": "s0", "type": "STEP_TYPE_TRANSFORM", "transform": {"expression": "{n: inputs.n}"}},
    {"id": "s1", "type": "STEP_TYPE_TRANSFORM", "depends_on": ["s0"],
     "inputs": {"n": "steps.s0.output.n"},
     "transform": {"expression": "{n: sum([args.n, `1`])}"}},
]


def test_one_replica_on_postgresql_is_one_services_process(postgres_url, tmp_path_factory):
    name, database_url = fresh_database(postgres_url)
    mesh = None
    try:
        mesh = start_replicated_mesh(tmp_path_factory.mktemp("pg-one-process"), database_url, 1)
        commands = list(children(mesh.process.pid).values())
        services = [c for c in commands if "mesh.cli serve" in c]
        assert len(services) == 1, commands  # one process: every service in it
        assert all(n in services[0] for n in ("agents", "governance", "workflows", "identity"))
        tenant = register(mesh)
        with mesh.client(tenant.token) as client:
            created = client.post("/api/v1/workflows", json={
                "name": "pg-one", "steps": STEPS, "outputs": {"n": "steps.s1.output.n"}})
            assert created.status_code == 200, created.text
            workflow = created.json()["id"]
            assert client.post(f"/api/v1/workflows/{workflow}/activate", json={}).status_code == 200
            ran = client.post(f"/api/v1/workflows/{workflow}/execute", json={"inputs": {"n": 41}})
            assert ran.status_code == 200, ran.text
            execution = ran.json()
            assert execution["status"] == "EXECUTION_STATUS_COMPLETED", execution
            assert execution["outputs"] == {"n": 42}
            decided = client.get("/api/v1/governance/decisions", params={
                "intent": "execute_workflow"}).json()
            # the start and each step, decided by governance in the same process
            assert decided["total"] == 3, decided
            assert all(d["allowed"] for d in decided["items"])
    finally:
        if mesh is not None:
            stop_mesh(mesh)
        drop_database(postgres_url, name)
