"""A generic, tenant-scoped repository over one `TenantTable`.

Every query it builds starts from `WHERE tenant_id = :tenant`, so a service cannot forget tenant
isolation; a row of another tenant is simply "not found" (never "forbidden", which would leak
that it exists). Lists share one shape (`mesh.runtime.paging`): equality filters, a
case-insensitive search over chosen columns, and `order_by` from an allow-list.

Two faces:
* inside a session (`find`, `get`, `list`, `add`, `save`, `delete`): ORM rows, for writes and
  for the read-modify-write of updates;
* the hot read path (`fetch`, `page`): SQL planned once when the repository is made, run on a
  raw connection (`Database.fetch`), rows turned straight into the service's proto message.

Lists stay flat as data grows: the repository declares a `(tenant_id, column, id)` index for
every orderable column (the migrations create them), pages are found in that index before the
rows are read (a deferred join, so deep pages skip index entries, not rows), and the unfiltered
`total` is a per-tenant counter kept in the same transaction as every insert and delete
(`row_counts`), not a count over the tenant's rows.

Quotas: a repository made with `quota="resource"` (agents, tools, workflows, prompts, ...) or
`quota="version"` (their versions) refuses the insert that would take a tenant past its quota of
that kind (`AGENTMESH_RESOURCE_QUOTA_PER_KIND`, `AGENTMESH_VERSION_QUOTA_PER_KIND`, per kind in
`AGENTMESH_RESOURCE_QUOTAS`) with 429 RESOURCE_QUOTA_EXCEEDED. The check reads the same counter
the insert bumps, in the same transaction: under the counter's row lock (PostgreSQL) or the
single SQLite writer, two concurrent creates cannot both take the last unit. Records the
platform makes (executions, calls, events, logs, deliveries) have no quota here.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from google.protobuf.message import Message
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, func, or_, select

from mesh.runtime import audit
from mesh.runtime.convert import RowMemo, TupleReader
from mesh.runtime.db import Database
from mesh.runtime.errors import AlreadyExists, NotFound, ResourceExhausted, invalid_field
from mesh.runtime.paging import Page, PageRequest
from mesh.runtime.tables import RowCount, TenantTable, is_uuid, utcnow

Row = TypeVar("Row", bound=TenantTable)
M = TypeVar("M", bound=Message)


def quota_of(kind: str, quota: str) -> int:
    """A tenant's quota of `kind` (a repository's noun) from the settings."""
    from mesh.runtime.settings import get_settings

    settings = get_settings()
    overrides = _overrides(settings.resource_quotas)
    if kind in overrides:
        return overrides[kind]
    return settings.version_quota_per_kind if quota == "version" \
        else settings.resource_quota_per_kind


@functools.lru_cache(maxsize=8)
def _overrides(text: str) -> dict[str, int]:
    found = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        kind, _, number = item.partition("=")
        found[kind.strip()] = int(number)
    return found


def like_pattern(text: str) -> str:
    """`%text%` for LIKE ... ESCAPE '\\', with the user's own wildcards taken literally."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def holds(column: Any, value: str):
    """A clause: the JSON list in `column` (tags) holds the string `value`. The list's JSON text
    is matched for the value's JSON form, wildcards escaped, which every database can do."""
    pattern = "%" + json.dumps(value).replace("\\", "\\\\").replace("%", "\\%") \
        .replace("_", "\\_") + "%"
    return sa.cast(column, sa.Text).like(pattern, escape="\\")


# The counter's bump, built once (a statement built per insert cost more than running it).
_COUNTS = RowCount.__table__
_BUMP = (sa.update(_COUNTS)
         .where(_COUNTS.c.table_name == sa.bindparam("count_table"),
                _COUNTS.c.tenant_id == sa.bindparam("count_tenant"))
         .values(n=_COUNTS.c.n + sa.bindparam("count_delta"))
         .returning(_COUNTS.c.n))
# Every repository's rows read lately, as messages (`fetch`, `page`): one bound for the process.
ROWS_READ = RowMemo()


class TenantRepository(Generic[Row]):
    """CRUD and lists for one tenant table, answering `message` on the fast read path."""

    def __init__(self, model: type[Row], *, noun: str, message: type[Message] | None = None,
                 name_column: str | None = "name", search_columns: tuple[str, ...] = (),
                 order_columns: tuple[str, ...] = (), default_order: str = "-created_at",
                 finish: Callable[[Message], Message] | None = None,
                 quota: str | None = None) -> None:
        self.model = model
        self.quota = quota  # "resource", "version" or None (see the module's docstring)
        self.table: sa.Table = model.__table__
        self.noun = noun
        self.name_column = name_column
        self.search_columns = search_columns
        self.order_columns = ("created_at", "updated_at", *order_columns)
        self.default_order = default_order
        self.message = message
        self.finish = finish
        unique = {tuple(c.name for c in constraint.columns) for constraint in self.table.constraints
                  if isinstance(constraint, sa.UniqueConstraint)}
        for column in self.order_columns:
            name = f"ix_{self.table.name}_tenant_{column}"
            if ("tenant_id", column) in unique or \
                    name in {index.name for index in self.table.indexes}:
                continue  # a unique (tenant_id, column) constraint is already that index
            sa.Index(name, self.table.c.tenant_id, self.table.c[column], self.table.c.id)
        self.columns = [c.name for c in self.table.columns]
        self._reader = TupleReader(message, self.columns) if message is not None else None
        self._columns_sql = ", ".join(f'"{c}"' for c in self.columns)

    # ---- inside a session -------------------------------------------------------------------
    def _scoped(self, tenant_id: str):
        return select(self.model).where(self.model.tenant_id == tenant_id)

    def find(self, session: Session, tenant_id: str, key: str, *, lock: bool = False) -> Row | None:
        """By id, or by the name column when `key` is not a UUID. `lock` takes a row lock
        (SELECT ... FOR UPDATE on PostgreSQL) for read-modify-write; SQLite's BEGIN IMMEDIATE
        already serialises writers."""
        by_id = is_uuid(key) or not self.name_column
        return session.exec(self._finding(by_id, lock),
                            params={"find_tenant": tenant_id, "find_key": key}).first()

    @functools.cache
    def _finding(self, by_id: bool, lock: bool):
        # Built once: making a statement and its cache key cost twice what running it did.
        column = self.model.id if by_id else getattr(self.model, self.name_column)
        query = self._scoped(sa.bindparam("find_tenant")).where(
            column == sa.bindparam("find_key"))
        return query.with_for_update() if lock else query

    def not_found(self, key: str) -> NotFound:
        return NotFound(f"{self.noun} {key!r} not found", reason=f"{self.noun.upper()}_NOT_FOUND",
                        details={self.noun: key})

    def _require_key(self, key: str) -> None:
        if not key:
            raise invalid_field(f"{self.noun}_id", "is required")

    def get(self, session: Session, tenant_id: str, key: str, *, lock: bool = False) -> Row:
        self._require_key(key)
        row = self.find(session, tenant_id, key, lock=lock)
        if row is None:
            raise self.not_found(key)
        return row

    def _order(self, order_by: str) -> list[tuple[str, bool]]:
        """(column, descending) pairs, ending with `id` in the direction of the first, so that
        the `(tenant_id, column, id)` index serves the whole ORDER BY."""
        pairs = []
        for part in filter(None, (order_by or self.default_order).split(",")):
            part = part.strip()
            name = part.lstrip("-")
            if name not in self.order_columns:
                raise invalid_field("order_by", f"cannot order by {name!r}; "
                                    f"use one of {', '.join(sorted(self.order_columns))}")
            pairs.append((name, part.startswith("-")))
        pairs.append(("id", pairs[0][1] if pairs else False))
        return pairs

    def _search_clause(self, search: str):
        pattern = like_pattern(search)
        return or_(*(func.lower(getattr(self.model, c)).like(pattern, escape="\\")
                     for c in self.search_columns))

    def list(self, session: Session, tenant_id: str, page: PageRequest, *,
             filters: dict[str, Any] | None = None, search: str = "",
             where: tuple[Any, ...] = ()) -> Page[Row]:
        """ORM rows of one page. `filters` are equality filters whose empty values mean "no
        filter"; `where` adds SQLAlchemy clauses as they are."""
        query = self._scoped(tenant_id).where(*where)
        for column, value in (filters or {}).items():
            if value not in (None, "", 0):
                query = query.where(getattr(self.model, column) == value)
        if search and self.search_columns:
            query = query.where(self._search_clause(search))
        total = session.exec(select(func.count()).select_from(query.subquery())).one()
        order = [getattr(self.model, c).desc() if d else getattr(self.model, c).asc()
                 for c, d in self._order(page.order_by)]
        rows = session.exec(query.order_by(*order).offset(page.offset).limit(page.page_size)).all()
        return Page(list(rows), total, page.page, page.page_size)

    def add(self, session: Session, row: Row, *, unique: bool = True) -> Row:
        """Inserts; a unique-constraint violation becomes ALREADY_EXISTS (409). `unique=False`:
        the caller knows the row can break no unique constraint (a new id, no other unique
        value): no savepoint is taken to catch a violation."""
        now = utcnow()
        row.created_at = row.created_at or now
        row.updated_at = now
        session.add(row)
        if unique:
            self._flush(session, row)
        else:
            session.flush()
        self._count(session, row.tenant_id, +1)
        return row

    def insert(self, session: Session, row: Row) -> Row:
        """As `add` with `unique=False`, the row's values inserted as such: for a row written
        once, complete, that the transaction does not change after (an execution run in its
        call). The ORM's unit of work was most of the cost of writing it; the audit event it
        would have captured is recorded all the same."""
        now = utcnow()
        row.created_at = row.created_at or now
        row.updated_at = now
        session.connection().execute(sa.insert(self.table),
                                     {c: getattr(row, c) for c in self.columns})
        audit.record_inserted(session, [row])
        self._count(session, row.tenant_id, +1)
        return row

    def save(self, session: Session, row: Row) -> Row:
        row.updated_at = utcnow()
        session.add(row)
        self._flush(session, row)
        return row

    def _flush(self, session: Session, row: Row) -> None:
        # Read before flushing: a failed flush expires the row in a closed transaction.
        name = getattr(row, self.name_column, "") if self.name_column else ""
        try:
            with session.begin_nested():
                session.flush()
        except IntegrityError as exc:
            raise AlreadyExists(f"{self.noun} {name!r} already exists",
                                reason=f"{self.noun.upper()}_ALREADY_EXISTS",
                                details={self.noun: name}) from exc

    def change(self, session: Session, row: Row, update: dict[str, Any], caller=None) -> Row:
        """Sets the fields of `update` on `row` and saves it; with `caller`, the change is in
        the audit trail, in the same transaction."""
        for key, value in update.items():
            setattr(row, key, value)
        if caller is not None:
            audit.record(session, caller, "update", self.noun, row.id, fields=sorted(update))
        return self.save(session, row)

    def remove(self, session: Session, row: Row, caller=None) -> str:
        """Deletes `row` (audited with `caller`); its name, for the answer's message."""
        name = getattr(row, self.name_column, row.id) if self.name_column else row.id
        self.delete(session, row)
        if caller is not None:
            audit.record(session, caller, "delete", self.noun, row.id, name=name)
        return name

    def delete(self, session: Session, row: Row) -> None:
        session.delete(row)
        session.flush()
        self._count(session, row.tenant_id, -1)

    def _count(self, session: Session, tenant_id: str, delta: int) -> None:
        params = {"count_table": self.table.name, "count_tenant": tenant_id, "count_delta": delta}
        counted = session.connection().execute(_BUMP, params).first()
        if counted is None:  # first write of this tenant here: start from an exact count
            exact = session.exec(select(func.count()).select_from(self.model)
                                 .where(self.model.tenant_id == tenant_id)).one()
            # Concurrent first writes (worker threads, replicas) race to create the counter:
            # the loser's insert does nothing, and it counts its own row on the winner's, which
            # did not see it (it was not committed yet).
            insert = (postgresql_insert if session.get_bind().dialect.name == "postgresql"
                      else sqlite_insert)(RowCount.__table__)
            counted = session.execute(insert.values(
                table_name=self.table.name, tenant_id=tenant_id, n=exact
            ).on_conflict_do_nothing().returning(RowCount.__table__.c.n)).first()
            if counted is None:
                counted = session.connection().execute(_BUMP, params).first()
        if delta > 0 and self.quota is not None and counted is not None:
            limit = quota_of(self.noun, self.quota)
            if counted[0] > limit:  # the transaction, this insert included, is rolled back
                raise ResourceExhausted(
                    f"the tenant has reached its quota of {limit} {self.noun}s",
                    reason="RESOURCE_QUOTA_EXCEEDED",
                    details={"kind": self.noun, "limit": limit})

    # ---- the hot read path ------------------------------------------------------------------
    def _convert(self, row: tuple) -> Message:
        message = self._reader(row)
        return self.finish(message) if self.finish else message

    def _message(self, row: tuple) -> Message:
        """`_convert(row)`, through the process's memo of rows read lately."""
        return ROWS_READ.message(self.message, row, self._convert)

    async def fetch(self, db: Database, tenant_id: str, key: str) -> Message:
        """The row with this id (or name) as the repository's message, or NOT_FOUND."""
        return self._message(await self.fetch_values(db, tenant_id, key))

    async def fetch_values(self, db: Database, tenant_id: str, key: str) -> tuple:
        """The row with this id (or name) as the driver gives it, its values in the order of
        `columns` (one indexed SELECT on the raw connection, inline on SQLite), or NOT_FOUND."""
        (rows,) = await db.fetch(self.finding(db, tenant_id, key), inline=True)
        if not rows:
            raise self.not_found(key)
        return rows[0]

    def finding(self, db: Database, tenant_id: str, key: str) -> tuple[str, tuple]:
        """The statement of `fetch_values`, for `Database.fetch` with others in one snapshot."""
        self._require_key(key)
        column = "id" if is_uuid(key) or not self.name_column else self.name_column
        p = db.placeholder
        return (f'SELECT {self._columns_sql} FROM "{self.table.name}" '
                f'WHERE "tenant_id" = {p} AND "{column}" = {p}', (tenant_id, key))

    def row_of(self, db: Database, values: tuple) -> Row:
        """An ORM row in no session from values as `fetch_values` gives them, each as the
        column's type reads it (JSON, times): what `find` would have loaded, without a
        session's unit of work (a hot path reading a row it does not change)."""
        processors = self._processors(db.engine.dialect)
        return self.model(**{name: process(value) if process and value is not None else value
                             for name, process, value in zip(self.columns, processors, values)})

    @functools.cache
    def _processors(self, dialect: sa.Dialect) -> list[Callable[[Any], Any] | None]:
        return [c.type.dialect_impl(dialect).result_processor(dialect, None)
                for c in self.table.columns]

    async def page(self, db: Database, tenant_id: str, page: PageRequest, *,
                   filters: dict[str, Any] | None = None, search: str = "") -> Page[Message]:
        """One page as messages. Unfiltered pages are index walks and run inline; filtered or
        searched ones may scan and run on the pool."""
        p = db.placeholder
        where, params = [f'"tenant_id" = {p}'], [tenant_id]
        for column, value in (filters or {}).items():
            if value not in (None, "", 0):
                where.append(f'"{column}" = {p}')
                params.append(value)
        if search and self.search_columns:
            where.append("(" + " OR ".join(f"lower(\"{c}\") LIKE {p} ESCAPE '\\'"
                                           for c in self.search_columns) + ")")
            params.extend([like_pattern(search)] * len(self.search_columns))
        order = ", ".join(f'"{c}" {"DESC" if d else "ASC"}' for c, d in self._order(page.order_by))
        condition = " AND ".join(where)
        table = f'"{self.table.name}"'
        rows_sql = (f"SELECT {self._columns_sql} FROM {table} WHERE \"id\" IN "
                    f"(SELECT \"id\" FROM {table} WHERE {condition} ORDER BY {order} "
                    f"LIMIT {p} OFFSET {p}) ORDER BY {order}")
        unfiltered = len(where) == 1
        if unfiltered:
            count_sql = (f'SELECT coalesce((SELECT "n" FROM "row_counts" WHERE "table_name" = {p} '
                         f'AND "tenant_id" = {p}), (SELECT count(*) FROM {table} '
                         f'WHERE "tenant_id" = {p}))')
            count_params = (self.table.name, tenant_id, tenant_id)
        else:
            count_sql = f"SELECT count(*) FROM {table} WHERE {condition}"
            count_params = tuple(params)
        rows, count = await db.fetch((rows_sql, (*params, page.page_size, page.offset)),
                                     (count_sql, count_params), inline=unfiltered)
        return Page([self._message(r) for r in rows], int(count[0][0]), page.page,
                    page.page_size)
