"""The identity service's repositories and the rows <-> messages it answers with."""

from __future__ import annotations

import hashlib

from sqlmodel import Session, select

from agentmesh.identity.v1 import identity_pb2 as pb
from mesh.identity.models import ApiKeyRow, RefreshTokenRow, UserRow
from mesh.runtime.convert import to_message
from mesh.runtime.repository import TenantRepository

users = TenantRepository(UserRow, noun="user", name_column=None,
                         search_columns=("email", "full_name"), order_columns=("email",),
                         quota="resource")
api_keys = TenantRepository(ApiKeyRow, noun="api_key", quota="resource")


def secret_hash(value: str) -> str:
    """How refresh tokens and API keys are stored: random 256-bit secrets, so SHA-256 (a slow
    hash buys nothing)."""
    return hashlib.sha256(value.encode()).hexdigest()


def api_key_message(row: ApiKeyRow, key: str = "") -> pb.ApiKey:
    """The key itself (`key`) only in the answer that creates it."""
    return to_message(row, pb.ApiKey, key=key or None)


def user_message(row: UserRow, scopes: list[str]) -> pb.User:
    return to_message(row, pb.User, scopes=scopes, password=None)


def user_by_email(session: Session, email: str) -> UserRow | None:
    return session.exec(select(UserRow).where(UserRow.email == email)).first()


def refresh_token(session: Session, token_hash: str, *, lock: bool = False
                  ) -> RefreshTokenRow | None:
    query = select(RefreshTokenRow).where(RefreshTokenRow.token_hash == token_hash)
    return session.exec(query.with_for_update() if lock else query).first()
