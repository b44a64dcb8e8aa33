"""The data both systems serve: a tenant registered through the mesh's REST API, its agents
created there (or, at scale, written straight into the agents service's SQLite file), and the
same rows for the reference."""

from __future__ import annotations

import asyncio
import multiprocessing
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2
import jwt

PASSWORD = "bench-password-1"


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
    async with httpx2.AsyncClient(base_url=base, timeout=30) as http:
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

    async def worker(http: httpx2.AsyncClient) -> None:
        while queue:
            i = queue.pop()
            reply = await http.post("/api/v1/agents", json=agent_spec(i), headers=headers)
            if reply.status_code not in (200, 201):
                raise RuntimeError(f"create agent {i}: HTTP {reply.status_code}: {reply.text}")
            ids[i] = reply.json()["id"]

    async with httpx2.AsyncClient(base_url=base, timeout=30) as http:
        await asyncio.gather(*(worker(http) for _ in range(workers)))
    tenant.agent_ids = [ids[i] for i in range(count)]


async def read_all(base: str, tenant: Tenant) -> list[dict]:
    """Every agent of the tenant as the mesh answers it (page_size 100)."""
    items: list[dict] = []
    headers = {"Authorization": f"Bearer {tenant.token}"}
    async with httpx2.AsyncClient(base_url=base, timeout=30) as http:
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
