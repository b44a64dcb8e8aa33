"""A generic, tenant-scoped repository over SQLModel tables.

Every query it builds starts from `WHERE tenant_id = :tenant`, so a service cannot forget tenant
isolation; a row of another tenant is simply "not found" (never "forbidden", which would leak
that it exists). Lists share one shape: page from 1, page_size 1-100 (default 20), equality
filters, a case-insensitive search over chosen columns, and `order_by` from an allow-list.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel, func, or_, select

from mesh.runtime import limits
from mesh.runtime.errors import AlreadyExists, InvalidArgument, NotFound, invalid_field

Row = TypeVar("Row", bound=SQLModel)
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class PageRequest:
    page: int = 1
    page_size: int = DEFAULT_PAGE_SIZE
    order_by: str = ""

    @classmethod
    def of(cls, request: Any) -> "PageRequest":
        """From a list request message: 0 means "not given" in proto3. Its declared field
        bounds (the `order_by` pattern) are checked here, once for every list."""
        if hasattr(request, "DESCRIPTOR"):  # a protobuf message (tests pass plain objects)
            limits.check(request)
        page, size = request.page or 1, request.page_size or DEFAULT_PAGE_SIZE
        violations = []
        if page < 1:
            violations.append(("page", "must be at least 1"))
        if not 1 <= size <= MAX_PAGE_SIZE:
            violations.append(("page_size", f"must be between 1 and {MAX_PAGE_SIZE}"))
        if violations:
            raise InvalidArgument("; ".join(f"{f} {d}" for f, d in violations),
                                  field_violations=violations)
        return cls(page, size, getattr(request, "order_by", ""))


@dataclass(frozen=True)
class Page(Generic[Row]):
    items: list[Row]
    total: int
    page: int
    page_size: int

    @property
    def pages(self) -> int:
        return math.ceil(self.total / self.page_size) if self.total else 0

    def fields(self, convert) -> dict[str, Any]:
        """Keyword arguments for a `List*Response` message."""
        return {"items": [convert(r) for r in self.items], "total": self.total,
                "page": self.page, "page_size": self.page_size, "pages": self.pages}


class TenantRepository(Generic[Row]):
    """CRUD for one table whose rows carry `id`, `tenant_id`, `created_at`, `updated_at`."""

    def __init__(self, model: type[Row], *, noun: str, name_column: str | None = "name",
                 search_columns: tuple[str, ...] = (), order_columns: tuple[str, ...] = (),
                 default_order: str = "-created_at") -> None:
        self.model = model
        self.noun = noun
        self.name_column = name_column
        self.search_columns = search_columns
        self.order_columns = {"created_at", "updated_at", *order_columns}
        self.default_order = default_order

    def _scoped(self, tenant_id: str):
        return select(self.model).where(self.model.tenant_id == tenant_id)

    def find(self, session: Session, tenant_id: str, key: str, *, lock: bool = False) -> Row | None:
        """By id, or by the name column when `key` is not a UUID. `lock` takes a row lock
        (SELECT ... FOR UPDATE on PostgreSQL) for read-modify-write; SQLite's BEGIN IMMEDIATE
        already serialises writers."""
        query = self._scoped(tenant_id)
        if lock:
            query = query.with_for_update()
        if is_uuid(key) or not self.name_column:
            query = query.where(self.model.id == key)
        else:
            query = query.where(getattr(self.model, self.name_column) == key)
        return session.exec(query).first()

    def get(self, session: Session, tenant_id: str, key: str, *, lock: bool = False) -> Row:
        if not key:
            raise invalid_field(f"{self.noun}_id", "is required")
        row = self.find(session, tenant_id, key, lock=lock)
        if row is None:
            raise NotFound(f"{self.noun} {key!r} not found", reason=f"{self.noun.upper()}_NOT_FOUND",
                           details={self.noun: key})
        return row

    def _order(self, order_by: str) -> list[Any]:
        clauses = []
        for part in filter(None, (order_by or self.default_order).split(",")):
            part = part.strip()
            name = part.lstrip("-")
            if name not in self.order_columns:
                raise invalid_field("order_by", f"cannot order by {name!r}; "
                                    f"use one of {', '.join(sorted(self.order_columns))}")
            column = getattr(self.model, name)
            clauses.append(column.desc() if part.startswith("-") else column.asc())
        clauses.append(self.model.id.asc())  # stable pages
        return clauses

    def list(self, session: Session, tenant_id: str, page: PageRequest, *,
             filters: dict[str, Any] | None = None, search: str = "",
             where: tuple[Any, ...] = ()) -> Page[Row]:
        """`filters` are equality filters whose empty values mean "no filter"; `where` adds
        SQLAlchemy clauses as they are."""
        query = self._scoped(tenant_id).where(*where)
        for column, value in (filters or {}).items():
            if value not in (None, "", 0):
                query = query.where(getattr(self.model, column) == value)
        if search and self.search_columns:
            pattern = f"%{search.lower()}%"
            query = query.where(or_(*(func.lower(getattr(self.model, c)).like(pattern)
                                      for c in self.search_columns)))
        total = session.exec(select(func.count()).select_from(query.subquery())).one()
        rows = session.exec(query.order_by(*self._order(page.order_by))
                            .offset((page.page - 1) * page.page_size).limit(page.page_size)).all()
        return Page(list(rows), total, page.page, page.page_size)

    def add(self, session: Session, row: Row) -> Row:
        """Inserts; a unique-constraint violation becomes ALREADY_EXISTS (409)."""
        now = utcnow()
        row.created_at = row.created_at or now
        row.updated_at = now
        session.add(row)
        self._flush(session, row)
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

    def delete(self, session: Session, row: Row) -> None:
        session.delete(row)
        session.flush()


def aware(value: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; everything here is stored in UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def timestamp_column(**kwargs: Any) -> Any:
    return sa.Column(sa.DateTime(timezone=True), **kwargs)
