"""Identity's defences that need state: token revocations and login throttling.

Revocations (docs/threat-model.md): rows in `token_revocations`, published by the internal
`ListRevocations` RPC and checked in memory by every service's runtime
(mesh/runtime/revocation.py). A row lives as long as the tokens it can refuse: the access-token
lifetime plus the gateway's clock skew, plus a margin. A transaction that adds one is marked
(`WAKE_TOPIC`), so its commit answers the held `ListRevocations` long polls at once
(mesh/runtime/watch.py); `version` names a list's content.

Login throttling: failures are counted per account (the normalized email, hashed, whether or not
the account exists, so the throttle reveals nothing) and per client IP, in the database, so the
state survives restarts and is shared by replicas. After `login_free_failures_per_*` failures
each further failure locks the key for base * 2^n seconds (capped); a locked key answers 429
RESOURCE_EXHAUSTED with Retry-After without checking the password. A successful login clears the
account's count.
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import timedelta

from sqlmodel import Session, select

from mesh.identity.models import LoginThrottleRow, TokenRevocationRow
from mesh.runtime.errors import ResourceExhausted
from mesh.runtime.tables import aware, utcnow
from mesh.runtime.settings import Settings
from mesh.runtime.wakeups import mark

_MARGIN_SECONDS = 60
WAKE_TOPIC = "revocations"  # a committed revocation answers the held ListRevocations calls


def _lifetime(settings: Settings) -> timedelta:
    return timedelta(seconds=settings.access_token_ttl_seconds + _MARGIN_SECONDS)


def revoke_user(session: Session, settings: Settings, user_id: str) -> None:
    """Every access token of the user issued until now is refused from now on."""
    purge_expired_revocations(session)
    now = utcnow()
    session.add(TokenRevocationRow(kind="user", subject=user_id, not_before=now,
                                   expires_at=now + _lifetime(settings), created_at=now))
    mark(session, WAKE_TOPIC)


def revoke_session(session: Session, settings: Settings, session_id: str) -> None:
    now = utcnow()
    session.add(TokenRevocationRow(kind="session", subject=session_id, not_before=now,
                                   expires_at=now + _lifetime(settings), created_at=now))
    mark(session, WAKE_TOPIC)


def user_not_before(session: Session, user_id: str) -> float:
    """The newest revocation time of the user (0.0: none in force)."""
    rows = session.exec(select(TokenRevocationRow.not_before).where(
        TokenRevocationRow.kind == "user", TokenRevocationRow.subject == user_id,
        TokenRevocationRow.expires_at > utcnow())).all()
    return max((aware(r).timestamp() for r in rows), default=0.0)


def revocations(session: Session) -> tuple[dict[str, int], list[str]]:
    now = utcnow()
    users: dict[str, float] = {}
    sessions: list[str] = []
    for row in session.exec(select(TokenRevocationRow).where(
            TokenRevocationRow.expires_at > now)).all():
        if row.kind == "user":
            stamp = aware(row.not_before).timestamp()
            users[row.subject] = max(users.get(row.subject, 0.0), stamp)
        else:
            sessions.append(row.subject)
    # A token's `iat` is whole seconds: refuse iat < not_before, rounded up, so a token issued
    # in the same second before the revocation is refused too (identity issues later tokens
    # with iat >= that second; see keys.issue_access_token).
    return {user: math.ceil(stamp) for user, stamp in users.items()}, sessions


def version(revocations: tuple[dict[str, int], list[str]]) -> str:
    """Names the list's content: equal lists, equal versions (ListRevocations' `version`)."""
    users, sessions = revocations
    text = json.dumps([sorted(users.items()), sorted(sessions)], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def purge_expired_revocations(session: Session) -> None:
    for row in session.exec(select(TokenRevocationRow).where(
            TokenRevocationRow.expires_at <= utcnow())).all():
        session.delete(row)


# ---- login throttling ---------------------------------------------------------------------------
def account_key(email: str) -> str:
    return "account:" + hashlib.sha256(email.encode()).hexdigest()


def ip_key(address: str) -> str:
    return "ip:" + (address or "unknown")


def check_not_locked(session: Session, keys: list[str]) -> None:
    now = utcnow()
    waits = []
    for key in keys:
        row = session.get(LoginThrottleRow, key)
        if row is not None and row.locked_until is not None and aware(row.locked_until) > now:
            waits.append((aware(row.locked_until) - now).total_seconds())
    if waits:
        retry = max(1, int(max(waits) + 0.999))
        raise ResourceExhausted("too many failed sign-ins; wait before trying again",
                                reason="LOGIN_THROTTLED", details={"retry_after": retry})


def record_failure(session: Session, settings: Settings, key: str, free: int) -> None:
    now = utcnow()
    row = session.get(LoginThrottleRow, key)
    if row is None:
        row = LoginThrottleRow(key=key, failures=0, last_failure_at=now)
    elif now - aware(row.last_failure_at) > timedelta(
            seconds=settings.login_backoff_max_seconds * 2):
        row.failures = 0  # an old streak is forgotten
    row.failures += 1
    row.last_failure_at = now
    if row.failures >= free:
        delay = min(settings.login_backoff_max_seconds,
                    settings.login_backoff_base_seconds * 2 ** (row.failures - free))
        row.locked_until = now + timedelta(seconds=delay)
    session.add(row)


def clear(session: Session, key: str) -> None:
    row = session.get(LoginThrottleRow, key)
    if row is not None:
        session.delete(row)
