"""Tables of the identity service."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import JSON, Column, Field, SQLModel

from mesh.runtime.repository import new_id, timestamp_column


def _ts(nullable: bool = True) -> Any:
    return Field(default=None, sa_column=timestamp_column(nullable=nullable))


class TenantRow(SQLModel, table=True):
    __tablename__ = "tenants"
    id: str = Field(default_factory=new_id, primary_key=True)
    name: str
    created_at: datetime | None = _ts(False)
    updated_at: datetime | None = _ts(False)


class UserRow(SQLModel, table=True):
    __tablename__ = "users"
    id: str = Field(default_factory=new_id, primary_key=True)
    tenant_id: str = Field(index=True)
    email: str = Field(sa_column=Column(sa.String, unique=True, nullable=False))
    full_name: str = ""
    role: str = "ROLE_VIEWER"
    active: bool = True
    password_hash: str
    last_login_at: datetime | None = _ts()
    created_at: datetime | None = _ts(False)
    updated_at: datetime | None = _ts(False)


class RefreshTokenRow(SQLModel, table=True):
    __tablename__ = "refresh_tokens"
    id: str = Field(default_factory=new_id, primary_key=True)
    token_hash: str = Field(sa_column=Column(sa.String, unique=True, nullable=False))
    family_id: str = Field(index=True)
    user_id: str = Field(index=True)
    tenant_id: str
    expires_at: datetime | None = _ts(False)
    revoked_at: datetime | None = _ts()
    created_at: datetime | None = _ts(False)


class ApiKeyRow(SQLModel, table=True):
    __tablename__ = "api_keys"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "name", name="uq_api_keys_tenant_name"),)
    id: str = Field(default_factory=new_id, primary_key=True)
    tenant_id: str = Field(index=True)
    name: str
    key_hash: str = Field(sa_column=Column(sa.String, unique=True, nullable=False))
    prefix: str
    scopes: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_by: str = ""
    expires_at: datetime | None = _ts()
    revoked_at: datetime | None = _ts()
    last_used_at: datetime | None = _ts()
    created_at: datetime | None = _ts(False)
    updated_at: datetime | None = _ts(False)


class SigningKeyRow(SQLModel, table=True):
    """ES256 keys. `next` is published in the JWKS before it signs anything, so gateways have
    it cached when it becomes `active`; `retired` keys stay published until their tokens expire."""

    __tablename__ = "signing_keys"
    kid: str = Field(primary_key=True)
    private_pem: str
    public_jwk: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    state: str  # next | active | retired
    created_at: datetime | None = _ts(False)
    activated_at: datetime | None = _ts()
    retired_at: datetime | None = _ts()


class TokenRevocationRow(SQLModel, table=True):
    """Published through ListRevocations. `user`: the user's access tokens issued before
    `not_before` are refused; `session`: tokens whose `sid` is `subject` are refused. Kept
    until `expires_at`, when every token it covers has expired anyway."""

    __tablename__ = "token_revocations"
    id: str = Field(default_factory=new_id, primary_key=True)
    kind: str
    subject: str = Field(index=True)
    not_before: datetime | None = _ts(False)
    expires_at: datetime | None = _ts(False)
    created_at: datetime | None = _ts(False)


class LoginThrottleRow(SQLModel, table=True):
    """Failed logins per account (hashed email) and per client IP; shared by replicas."""

    __tablename__ = "login_throttle"
    key: str = Field(primary_key=True)
    failures: int = 0
    locked_until: datetime | None = _ts()
    last_failure_at: datetime | None = _ts(False)
