"""The system service's tables: the versioned runtime configuration, feature flags, system
alerts and cache clears. All are platform-wide: rows that belong to no tenant carry
`tenant_id = ""` (the tenant repository then scopes them like any other)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from mesh.runtime.tables import TenantTable, json_field, timestamp_field

PLATFORM = ""  # the tenant_id of platform-wide rows


class ConfigVersionRow(SQLModel, table=True):
    """One version of the runtime configuration; the newest is the current one. Kept whole, so
    the history of every change is here (who, when, what)."""

    __tablename__ = "config_versions"

    version: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    config: dict[str, Any] = json_field(dict)
    updated_by: str = ""
    tenant_id: str = ""
    created_at: datetime | None = timestamp_field(nullable=False)


class FeatureFlagRow(TenantTable, table=True):
    __tablename__ = "feature_flags"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "name", name="uq_feature_flags_tenant_name"),)

    name: str
    description: str = ""
    enabled: bool = False
    rollout_percentage: int = 100
    tenant_ids: list[str] = json_field(list)
    rules: dict[str, Any] = json_field(dict)
    updated_by: str = ""


class AlertRow(TenantTable, table=True):
    """An alert the platform raised about itself. `key` names the condition ("unhealthy:agents"),
    so a condition that holds again updates its firing alert instead of adding one."""

    __tablename__ = "system_alerts"
    __audit__ = False  # a record itself, not a change to audit

    key: str = Field(index=True)
    title: str = ""
    message: str = ""
    severity: str = "ALERT_SEVERITY_WARNING"
    state: str = "ALERT_STATE_FIRING"
    service: str = ""
    resolved_at: datetime | None = timestamp_field()


class CacheClearRow(SQLModel, table=True):
    """Each ClearCache: its generation is what service processes compare with their own."""

    __tablename__ = "cache_clears"
    __audit__ = False  # a record itself, not a change to audit

    generation: int = Field(primary_key=True)
    caches: list[str] = json_field(list)
    pattern: str = ""
    created_by: str = ""
    tenant_id: str = ""
    created_at: datetime | None = timestamp_field(nullable=False)
