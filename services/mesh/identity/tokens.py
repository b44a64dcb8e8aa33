"""Sessions: an access token and a refresh token issued together, the refresh token's single
use (rotation within its family; reuse revokes the family) and signing out."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from datetime import timedelta

from sqlmodel import Session, select

from agentmesh.identity.v1 import identity_pb2 as pb
from mesh.identity import keys, security
from mesh.identity.models import RefreshTokenRow, UserRow
from mesh.identity.store import refresh_token, secret_hash
from mesh.runtime.errors import NotFound, Unauthenticated
from mesh.runtime.settings import Settings
from mesh.runtime.tables import aware, utcnow


def issue(session: Session, settings: Settings, user: UserRow, scopes: list[str],
          family_id: str | None = None) -> pb.TokenResponse:
    """A new session (or the next tokens of session `family_id`)."""
    key = keys.active_key(session, settings)
    family_id = family_id or uuid.uuid4().hex
    access = keys.issue_access_token(key, settings, user_id=user.id, tenant_id=user.tenant_id,
                                     role=user.role, scopes=scopes, session_id=family_id,
                                     not_before=security.user_not_before(session, user.id))
    refresh = secrets.token_urlsafe(32)
    now = utcnow()
    session.add(RefreshTokenRow(
        token_hash=secret_hash(refresh), family_id=family_id,
        user_id=user.id, tenant_id=user.tenant_id, created_at=now,
        expires_at=now + timedelta(seconds=settings.refresh_token_ttl_seconds)))
    session.flush()
    return pb.TokenResponse(access_token=access, refresh_token=refresh, token_type="Bearer",
                            expires_in=settings.access_token_ttl_seconds)


def rotate(session: Session, settings: Settings, refresh: str,
           scopes_of: Callable[[UserRow], list[str]]) -> pb.TokenResponse | None:
    """The next tokens of the session `refresh` belongs to; None when `refresh` was already
    used, after revoking its whole family (the caller raises once that has committed)."""
    row = refresh_token(session, secret_hash(refresh), lock=True)
    if row is None or aware(row.expires_at) < utcnow():
        raise Unauthenticated("refresh token is invalid or expired",
                              reason="INVALID_REFRESH_TOKEN")
    if row.revoked_at is not None:
        # Reuse of a rotated token: someone else may hold it. Revoke the family.
        for other in session.exec(select(RefreshTokenRow).where(
                RefreshTokenRow.family_id == row.family_id,
                RefreshTokenRow.revoked_at.is_(None))).all():
            other.revoked_at = utcnow()
            session.add(other)
        security.revoke_session(session, settings, row.family_id)
        return None
    user = session.get(UserRow, row.user_id)
    if user is None or not user.active:
        raise Unauthenticated("user is gone or inactive", reason="INVALID_REFRESH_TOKEN")
    row.revoked_at = utcnow()
    session.add(row)
    return issue(session, settings, user, scopes_of(user), family_id=row.family_id)


def sign_out(session: Session, settings: Settings, tenant_id: str, user_id: str,
             refresh: str) -> None:
    """Ends the caller's session that `refresh` belongs to, its access tokens included."""
    row = session.exec(select(RefreshTokenRow).where(
        RefreshTokenRow.token_hash == secret_hash(refresh),
        RefreshTokenRow.tenant_id == tenant_id,
        RefreshTokenRow.user_id == user_id)).first()
    if row is None:  # another user's or tenant's token, or none at all: nothing revoked
        raise NotFound("no session of yours has this refresh token", reason="SESSION_NOT_FOUND")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.add(row)
    # The session's access tokens (claim `sid`) are refused within seconds too.
    security.revoke_session(session, settings, row.family_id)
