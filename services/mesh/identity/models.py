"""Tables of the identity service. A change here needs a migration:
`agentmesh db revision identity -m "..."`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from mesh.runtime.tables import TenantTable, json_field, new_id, timestamp_field


class TenantRow(SQLModel, table=True):
    __tablename__ = "tenants"
    id: str = Field(default_factory=new_id, primary_key=True)
    name: str
    created_at: datetime | None = timestamp_field(nullable=False)
    updated_at: datetime | None = timestamp_field(nullable=False)


class UserRow(TenantTable, table=True):
    __tablename__ = "users"
    email: str = Field(sa_column_kwargs={"unique": True})
    full_name: str = ""
    role: str = "ROLE_VIEWER"
    active: bool = True
    password_hash: str
    last_login_at: datetime | None = timestamp_field()


class RefreshTokenRow(SQLModel, table=True):
    __tablename__ = "refresh_tokens"
    __audit__ = False  # a record itself, not a change to audit
    id: str = Field(default_factory=new_id, primary_key=True)
    token_hash: str = Field(sa_column_kwargs={"unique": True})
    family_id: str = Field(index=True)
    user_id: str = Field(index=True)
    tenant_id: str
    expires_at: datetime | None = timestamp_field(nullable=False)
    revoked_at: datetime | None = timestamp_field()
    created_at: datetime | None = timestamp_field(nullable=False)


class ApiKeyRow(TenantTable, table=True):
    __tablename__ = "api_keys"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "name", name="uq_api_keys_tenant_name"),)
    name: str
    key_hash: str = Field(sa_column_kwargs={"unique": True})
    prefix: str
    scopes: list[str] = json_field(list)
    created_by: str = ""
    expires_at: datetime | None = timestamp_field()
    revoked_at: datetime | None = timestamp_field()
    last_used_at: datetime | None = timestamp_field()


class SigningKeyRow(SQLModel, table=True):
    """ES256 keys. `next` is published in the JWKS before it signs anything, so gateways have
    it cached when it becomes `active`; `retired` keys stay published until their tokens expire."""

    __tablename__ = "signing_keys"
    __audit__ = False  # a record itself, not a change to audit
    kid: str = Field(primary_key=True)
    private_pem: str
    public_jwk: dict[str, Any] = json_field(dict)
    state: str  # next | active | retired
    created_at: datetime | None = timestamp_field(nullable=False)
    activated_at: datetime | None = timestamp_field()
    retired_at: datetime | None = timestamp_field()


class TokenRevocationRow(SQLModel, table=True):
    """Published through ListRevocations. `user`: the user's access tokens issued before
    `not_before` are refused; `session`: tokens whose `sid` is `subject` are refused. Kept
    until `expires_at`, when every token it covers has expired anyway."""

    __tablename__ = "token_revocations"
    __audit__ = False  # a record itself, not a change to audit
    id: str = Field(default_factory=new_id, primary_key=True)
    kind: str
    subject: str = Field(index=True)
    not_before: datetime | None = timestamp_field(nullable=False)
    expires_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True),
                                        nullable=False, index=True)
    created_at: datetime | None = timestamp_field(nullable=False)


class LoginThrottleRow(SQLModel, table=True):
    """Failed logins per account (hashed email) and per client IP; shared by replicas."""

    __tablename__ = "login_throttle"
    __audit__ = False  # a record itself, not a change to audit
    key: str = Field(primary_key=True)
    failures: int = 0
    locked_until: datetime | None = timestamp_field()
    last_failure_at: datetime | None = timestamp_field(nullable=False)
