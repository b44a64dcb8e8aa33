"""The shared repository and database layer, on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import sqlalchemy as sa

from agentmesh.agents.v1 import agents_pb2 as pb
from mesh.agents.models import AgentRow
from mesh.agents.service import DEFINITION as AGENTS
from mesh.runtime.db import Database
from mesh.runtime.errors import AlreadyExists, InvalidArgument, NotFound
from mesh.runtime.paging import PageRequest
from mesh.runtime.repository import TenantRepository
from mesh.runtime.settings import Settings
from tests.conftest import POSTGRES_URL

repo = TenantRepository(AgentRow, noun="agent", message=pb.Agent, search_columns=("name",),
                        order_columns=("name",))


def _postgres_available() -> bool:
    try:
        with sa.create_engine(POSTGRES_URL).connect():
            return True
    except Exception:  # noqa: BLE001
        return False


@pytest.fixture(params=["sqlite", "postgres"])
def database(request, tmp_path):
    if request.param == "sqlite":
        settings = Settings(data_dir=tmp_path)
    else:
        if not _postgres_available():
            pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_URL}")
        settings = Settings(data_dir=tmp_path, database_url=POSTGRES_URL)
    service = f"agents_test_{uuid.uuid4().hex[:8]}" if request.param == "postgres" else "agents"
    db = Database.for_service(service, settings)
    db.migrate(AGENTS.migration_dirs())
    db.migrate(AGENTS.migration_dirs())  # idempotent
    yield db
    if request.param == "postgres":
        with db.engine.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{service}" CASCADE')
    db.close()


def _add(db, tenant, name):
    return asyncio.run(db.write(lambda s: repo.add(s, AgentRow(tenant_id=tenant, name=name))))


def test_rows_are_scoped_to_their_tenant(database):
    row = _add(database, "t1", "alpha")
    found = asyncio.run(database.read(lambda s: repo.get(s, "t1", "alpha")))
    assert found.id == row.id
    with pytest.raises(NotFound):
        asyncio.run(database.read(lambda s: repo.get(s, "t2", row.id)))
    assert asyncio.run(database.read(lambda s: repo.list(s, "t2", PageRequest()))).total == 0


def test_duplicate_name_per_tenant_is_already_exists_and_writes_nothing(database):
    _add(database, "t1", "alpha")
    with pytest.raises(AlreadyExists):
        _add(database, "t1", "alpha")
    _add(database, "t2", "alpha")  # another tenant may use the name
    page = asyncio.run(database.read(lambda s: repo.list(s, "t1", PageRequest())))
    assert page.total == 1


def test_list_pages_search_and_order(database):
    for i in range(7):
        _add(database, "t1", f"agent-{i}")
    page = asyncio.run(database.read(lambda s: repo.list(
        s, "t1", PageRequest(page=2, page_size=3, order_by="-name"), search="AGENT")))
    assert (page.total, page.pages) == (7, 3)
    assert [r.name for r in page.items] == ["agent-3", "agent-2", "agent-1"]
    with pytest.raises(InvalidArgument):
        asyncio.run(database.read(lambda s: repo.list(s, "t1", PageRequest(order_by="secret"))))


def test_page_request_bounds():
    class Request:
        page, page_size, order_by = 0, 0, ""
    assert PageRequest.of(Request()) == PageRequest(1, 20, "")
    Request.page_size = 101
    with pytest.raises(InvalidArgument):
        PageRequest.of(Request())


def test_concurrent_read_then_write_transactions_do_not_fail(database):
    """Each writer reads the row, then updates it: on SQLite without BEGIN IMMEDIATE this fails
    with "database is locked" when two transactions try to upgrade their read locks."""
    row = _add(database, "t1", "counter")

    def bump(session):
        current = repo.get(session, "t1", row.id, lock=True)
        current.version += 1
        repo.save(session, current)

    async def many():
        await asyncio.gather(*(database.write(bump) for _ in range(40)))

    asyncio.run(many())
    final = asyncio.run(database.read(lambda s: repo.get(s, "t1", row.id)))
    assert final.version == 1 + 40


def test_fast_path_fetch_and_page_match_the_session_path(database):
    rows = [_add(database, "t1", f"agent-{i}") for i in range(5)]
    _add(database, "t2", "agent-0")
    got = asyncio.run(repo.fetch(database, "t1", rows[2].id))
    assert (got.id, got.name, got.tenant_id) == (rows[2].id, "agent-2", "t1")
    assert got.status == pb.AGENT_STATUS_DRAFT and got.created_at.seconds > 0
    assert asyncio.run(repo.fetch(database, "t1", "agent-3")).id == rows[3].id
    with pytest.raises(NotFound):
        asyncio.run(repo.fetch(database, "t2", rows[2].id))
    page = asyncio.run(repo.page(database, "t1", PageRequest(page=2, page_size=2)))
    assert (page.total, page.pages) == (5, 3)
    assert [m.name for m in page.items] == ["agent-2", "agent-1"]  # newest first
    by_name = asyncio.run(repo.page(database, "t1", PageRequest(order_by="name"), search="NT-4"))
    assert [m.name for m in by_name.items] == ["agent-4"] and by_name.total == 1


def test_a_row_made_from_raw_values_is_the_row_the_orm_loads(database):
    """`row_of(fetch_values(...))` (a hot path's read without a session) holds what `get`
    loads: JSON columns decoded, times as times, on either database."""
    def add(session):
        return repo.add(session, AgentRow(tenant_id="t1", name="raw", tools=["a", "b"],
                                          config={"temperature": 0.5, "nested": {"k": [1]}},
                                          labels={"team": "x"}))
    asyncio.run(database.write(add))
    loaded = asyncio.run(database.read(lambda s: repo.get(s, "t1", "raw")))
    made = repo.row_of(database, asyncio.run(repo.fetch_values(database, "t1", "raw")))
    assert made.model_dump() == loaded.model_dump()
    assert made.config["nested"] == {"k": [1]} and made.created_at == loaded.created_at


def test_search_takes_like_wildcards_literally(database):
    _add(database, "t1", "plain")
    _add(database, "t1", "with_underscore")
    for search in ("%", "_"):
        page = asyncio.run(repo.page(database, "t1", PageRequest(), search=search))
        assert [m.name for m in page.items] == (["with_underscore"] if search == "_" else [])
        session_page = asyncio.run(database.read(lambda s: repo.list(s, "t1", PageRequest(),
                                                                     search=search)))
        assert session_page.total == page.total


def test_total_is_kept_per_tenant_through_inserts_and_deletes(database):
    rows = [_add(database, "t1", f"a-{i}") for i in range(3)]
    asyncio.run(database.write(lambda s: repo.delete(s, repo.get(s, "t1", rows[0].id))))
    page = asyncio.run(repo.page(database, "t1", PageRequest()))
    counted = asyncio.run(database.read(lambda s: repo.list(s, "t1", PageRequest()))).total
    assert page.total == counted == 2
    assert asyncio.run(repo.page(database, "t3", PageRequest())).total == 0
def test_search_wildcards_match_only_themselves(database):
    for name in ("alpha", "50%-off", "snake_case", "back\\slash"):
        _add(database, "t-like", name)

    def names(term):
        page = asyncio.run(database.read(lambda s: repo.list(s, "t-like", PageRequest(),
                                                             search=term)))
        return sorted(r.name for r in page.items)

    assert names("%") == ["50%-off"]
    assert names("_") == ["snake_case"]
    assert names("\\") == ["back\\slash"]
    assert names("a") == ["alpha", "back\\slash", "snake_case"]


def test_a_quota_holds_under_concurrent_creates_and_writes_nothing_past_it(database, monkeypatch):
    from mesh.runtime import settings as settings_module
    from mesh.runtime.errors import ResourceExhausted

    monkeypatch.setenv("AGENTMESH_RESOURCE_QUOTAS", "agent=5")
    settings_module.get_settings.cache_clear()
    quoted = TenantRepository(AgentRow, noun="agent", message=pb.Agent, quota="resource")

    def create(tenant, name):
        return database.write(lambda s: quoted.add(s, AgentRow(tenant_id=tenant, name=name)))

    async def many():
        return await asyncio.gather(*(create("t1", f"a{i}") for i in range(12)),
                                    return_exceptions=True)
    try:
        results = asyncio.run(many())
        refused = [r for r in results if isinstance(r, ResourceExhausted)]
        assert len(refused) == 7, results
        assert all(r.reason == "RESOURCE_QUOTA_EXCEEDED" for r in refused)
        assert refused[0].details == {"kind": "agent", "limit": 5}
        page = asyncio.run(database.read(lambda s: quoted.list(s, "t1", PageRequest())))
        assert page.total == 5 and len(page.items) == 5  # refused inserts rolled back
        assert asyncio.run(create("t2", "a0")).tenant_id == "t2"  # another tenant's own quota
        victim = page.items[0].name
        asyncio.run(database.write(lambda s: quoted.delete(s, quoted.get(s, "t1", victim))))
        assert asyncio.run(create("t1", "again")).name == "again"  # a freed place is usable
        with pytest.raises(ResourceExhausted):
            asyncio.run(create("t1", "one-more"))
    finally:
        settings_module.get_settings.cache_clear()


def test_a_row_read_again_is_the_same_message_and_a_change_is_seen_at_once(database):
    """`fetch` and `page` keep recent rows' messages (mesh.runtime.repository.ROWS_READ): a
    second read answers the same fields in a message of its own, and a changed row its change."""
    row = _add(database, "t1", "memo")

    def change(session):
        found = repo.get(session, "t1", row.id)
        found.description, found.config = "changed", {"temperature": 0.5, "tags": ["a"]}
        session.add(found)

    first = asyncio.run(repo.fetch(database, "t1", row.id))
    again = asyncio.run(repo.fetch(database, "t1", row.id))
    assert again == first and again is not first
    again.name = "scribbled on by a caller"  # a caller's own copy: the next read is unchanged
    assert asyncio.run(repo.fetch(database, "t1", row.id)).name == "memo"
    asyncio.run(database.write(change))
    changed = asyncio.run(repo.fetch(database, "t1", row.id))
    assert changed.description == "changed"
    assert dict(changed.config) == {"temperature": 0.5, "tags": ["a"]}
    (listed,) = asyncio.run(repo.page(database, "t1", PageRequest())).items
    assert listed == changed


def test_the_row_memo_is_bounded_and_converts_what_it_cannot_key():
    from mesh.runtime.convert import RowMemo

    memo, converted = RowMemo(entries=3, max_bytes=64), []

    def convert(row):
        converted.append(row)
        return pb.Agent(id=row[0], name=row[1])

    for i in range(5):
        assert memo.message(pb.Agent, (f"id-{i}", "n"), convert).id == f"id-{i}"
    assert len(memo._held) == 3
    memo.message(pb.Agent, ("id-4", "n"), convert)  # held: not converted again
    assert len(converted) == 5
    memo.message(pb.Agent, ("id-0", "n"), convert)  # evicted first: converted again
    assert len(converted) == 6
    unhashable = ("id-9", "n", {"a": 1})  # a driver's dict for a JSON column
    assert memo.message(pb.Agent, unhashable, convert).id == "id-9"
    memo.message(pb.Agent, unhashable, convert)
    assert converted[-2:] == [unhashable, unhashable]
    large = ("id-big", "x" * 100)  # over max_bytes: never held
    memo.message(pb.Agent, large, convert)
    assert ("id-big" not in {k[1][0] for k in memo._held})
