"""Tenants, users and their passwords: the rules of registering, signing in and managing users,
in the caller's transaction."""

from __future__ import annotations

import asyncio
from typing import Any

import argon2
from sqlmodel import Session, func, select

from agentmesh.identity.v1 import identity_pb2 as pb
from mesh.identity import security
from mesh.identity.models import RefreshTokenRow, TenantRow, UserRow
from mesh.identity.operators import Operators
from mesh.identity.roles import ROLES, scopes_for
from mesh.identity.store import user_by_email, users
from mesh.runtime.db import serialize
from mesh.runtime.errors import AlreadyExists, FailedPrecondition, invalid_field
from mesh.runtime.settings import Settings
from mesh.runtime.tables import utcnow

_hasher = argon2.PasswordHasher()
# Checked against on unknown emails too, so a login takes as long whether or not the email exists.
_DUMMY_HASH = _hasher.hash("not-a-real-password")


def check_email(email: str) -> str:
    email = email.strip().lower()
    if "@" not in email or len(email) > 254 or email.startswith("@") or email.endswith("@"):
        raise invalid_field("email", "must be an email address")
    return email


def check_password(password: str) -> None:
    if len(password) < 8:
        raise invalid_field("password", "must be at least 8 characters")


def check_role(role: int) -> str:
    if role not in ROLES:
        raise invalid_field("role", "must be ROLE_ADMIN, ROLE_DEVELOPER, ROLE_USER or "
                            "ROLE_VIEWER")
    return pb.Role.Name(role)


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


async def password_matches(user: UserRow | None, password: str) -> bool:
    """Always one Argon2 verification: the same time for unknown emails (`user` None)."""
    try:
        await asyncio.to_thread(_hasher.verify, user.password_hash if user else _DUMMY_HASH,
                                password)
    except argon2.exceptions.VerificationError:
        return False
    return user is not None


def user_scopes(user: UserRow, operators: Operators) -> list[str]:
    return list(scopes_for(pb.Role.Value(user.role), user.tenant_id in operators))


def register(session: Session, operators: Operators, tenant_name: str, email: str,
             full_name: str, password_hash: str) -> tuple[TenantRow, UserRow]:
    """A new tenant and its first admin."""
    # One answer for a taken email and a taken tenant name, naming neither value: the caller
    # learns only that one of its two values is in use (docs/threat-model.md: Register signs
    # the new admin in, so it cannot answer the same way in both cases).
    taken = user_by_email(session, email) or session.exec(select(TenantRow).where(
        func.lower(TenantRow.name) == tenant_name.lower())).first()
    if taken:
        raise AlreadyExists("cannot register with this email and tenant name; sign in, "
                            "or choose another tenant name", reason="REGISTRATION_CONFLICT")
    now = utcnow()
    tenant = TenantRow(name=tenant_name, created_at=now, updated_at=now)
    session.add(tenant)
    session.flush()
    if not operators.complete:
        serialize(session, "identity-first-tenant")  # one first tenant, even in a race
        operators.refresh(session)
    user = users.add(session, UserRow(tenant_id=tenant.id, email=email, full_name=full_name,
                                      role="ROLE_ADMIN", password_hash=password_hash))
    return tenant, user


def create_user(session: Session, tenant_id: str, email: str, full_name: str, role: str,
                password_hash: str) -> UserRow:
    if user_by_email(session, email):
        raise AlreadyExists(f"a user with email {email!r} already exists",
                            reason="EMAIL_TAKEN", details={"email": email})
    return users.add(session, UserRow(tenant_id=tenant_id, email=email, full_name=full_name,
                                      role=role, active=True, password_hash=password_hash))


def update_user(session: Session, settings: Settings, tenant_id: str, user_id: str,
                update: dict[str, Any]) -> UserRow:
    row = users.get(session, tenant_id, user_id, lock=True)
    demoting = row.role == "ROLE_ADMIN" and (
        update.get("role", "ROLE_ADMIN") != "ROLE_ADMIN" or update.get("active") is False)
    if demoting:
        keep_an_admin(session, tenant_id, row.id)
    if all(getattr(row, key) == value for key, value in update.items()):
        return row  # a no-op update changes nothing, not even updated_at
    # Tokens carry the role's scopes and outlive a deactivation: refuse them now.
    if update.get("active") is False or update.get("role", row.role) != row.role:
        security.revoke_user(session, settings, row.id)
    if update.get("active") is False:
        revoke_refresh_tokens(session, row.id)
    for key, value in update.items():
        setattr(row, key, value)
    return users.save(session, row)


def delete_user(session: Session, settings: Settings, tenant_id: str, user_id: str) -> str:
    """Deletes the user, revoking every token it holds; its email."""
    row = users.get(session, tenant_id, user_id, lock=True)
    if row.role == "ROLE_ADMIN":
        keep_an_admin(session, tenant_id, row.id)
    revoke_refresh_tokens(session, row.id)
    security.revoke_user(session, settings, row.id)
    users.delete(session, row)
    return row.email


def revoke_refresh_tokens(session: Session, user_id: str) -> None:
    for token in session.exec(select(RefreshTokenRow).where(
            RefreshTokenRow.user_id == user_id, RefreshTokenRow.revoked_at.is_(None))).all():
        token.revoked_at = utcnow()
        session.add(token)


def keep_an_admin(session: Session, tenant_id: str, leaving: str) -> None:
    others = session.exec(select(UserRow).where(
        UserRow.tenant_id == tenant_id, UserRow.role == "ROLE_ADMIN",
        UserRow.active.is_(True), UserRow.id != leaving)).first()
    if others is None:
        raise FailedPrecondition("a tenant must keep at least one active admin",
                                 reason="LAST_ADMIN")
