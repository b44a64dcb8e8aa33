"""What every table of every service shares: ids, times, JSON columns, and the tenant-row base.

    class AgentRow(TenantTable, table=True):
        __tablename__ = "agents"
        name: str
        tools: list[str] = json_field(list)

gives the table `id` (UUID text), `tenant_id`, `created_at` and `updated_at` (timezone-aware,
UTC) without writing them again. The tenant repository (`mesh.runtime.repository`) fills the
times and declares the list indexes.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import weakref

import sqlalchemy as sa
from pydantic._internal import _fields as pydantic_fields
from sqlmodel import JSON, Field, SQLModel


def _once_per_factory(inspect_factory):
    """pydantic (2.14) asks whether a field's default factory takes the validated data by
    reading the factory's signature (`inspect.signature`) every time a default is made, and
    SQLModel makes every default of every new row that way: a row of ten defaults cost ~50 us
    of signature inspection, the largest single item of a workflow execution's profile.
    A factory's signature does not change, so the answer is kept per factory (weakly: a
    factory that goes away takes its entry along; one that cannot be weakly referenced is
    asked every time, as before)."""
    answers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def takes_validated_data_argument(factory):
        try:
            return answers[factory]
        except KeyError:
            answer = answers[factory] = inspect_factory(factory)
            return answer
        except TypeError:
            return inspect_factory(factory)

    takes_validated_data_argument.uncached = inspect_factory
    return takes_validated_data_argument


if not hasattr(pydantic_fields.takes_validated_data_argument, "uncached"):
    pydantic_fields.takes_validated_data_argument = _once_per_factory(
        pydantic_fields.takes_validated_data_argument)


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


def is_uuid(value: str) -> bool:
    # Cheaper than uuid.UUID() on the hot path, and as strict for the canonical form we store.
    if len(value) != 36 or value[8] != "-" or value[13] != "-" or value[18] != "-" or value[23] != "-":
        return False
    try:
        int(value.replace("-", ""), 16)
    except ValueError:
        return False
    return True


def aware(value: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; everything here is stored in UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def timestamp_field(*, nullable: bool = True) -> Any:
    """A timezone-aware timestamp column (None until set)."""
    return Field(default=None, sa_type=sa.DateTime(timezone=True), nullable=nullable)


def json_field(factory: type = dict) -> Any:
    """A JSON column holding a dict or list (maps, repeated fields, Structs of the proto)."""
    return Field(default_factory=factory, sa_type=JSON, nullable=False)


class TenantTable(SQLModel):
    """Base of every tenant-owned table: rows are only ever reached through their tenant."""

    id: str = Field(default_factory=new_id, primary_key=True)
    tenant_id: str = Field(nullable=False)
    created_at: datetime | None = timestamp_field(nullable=False)
    updated_at: datetime | None = timestamp_field(nullable=False)


class RowCount(SQLModel, table=True):
    """Rows per tenant of each tenant table, kept by the repository in the same transaction as
    every insert and delete, so an unfiltered list answers `total` without counting rows.
    Every service has this table (the runtime's own migration branch creates it)."""

    __tablename__ = "row_counts"

    table_name: str = Field(primary_key=True)
    tenant_id: str = Field(primary_key=True)
    n: int = 0
