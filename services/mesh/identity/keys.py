"""Signing keys and access tokens.

Rotation (documented in docs/architecture.md): the JWKS always holds the `active` key, the
`next` key and `retired` keys younger than the access-token lifetime. Rotating promotes `next`
(already published and cached by every gateway) to `active` and makes a new `next`, so no
gateway ever sees a token signed by a key it has not fetched: no burst of 401s.
"""

from __future__ import annotations

import json
import math
import uuid
from datetime import timedelta

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlmodel import Session, select

from mesh.identity.models import SigningKeyRow
from mesh.runtime.db import serialize
from mesh.runtime.tables import aware, utcnow
from mesh.runtime.settings import Settings

ALGORITHM = "ES256"


def _new_key(state: str) -> SigningKeyRow:
    private = ec.generate_private_key(ec.SECP256R1())
    kid = uuid.uuid4().hex[:16]
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private.public_key()))
    jwk.update({"kid": kid, "use": "sig", "alg": ALGORITHM})
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    now = utcnow()
    return SigningKeyRow(kid=kid, private_pem=pem, public_jwk=jwk, state=state, created_at=now,
                         activated_at=now if state == "active" else None)


def ensure_keys(session: Session) -> None:
    """First run: make an active and a next key. Later runs keep what is stored."""
    serialize(session, "identity-signing-keys")  # replicas starting together make one pair
    states = {row.state for row in session.exec(select(SigningKeyRow)).all()}
    if "active" not in states:
        session.add(_new_key("active"))
    if "next" not in states:
        session.add(_new_key("next"))
    session.flush()


def rotate(session: Session) -> SigningKeyRow:
    """Promotes `next` to `active`, retires the old active key, makes a new `next`."""
    ensure_keys(session)  # also holds the lock until commit: one rotation at a time
    now = utcnow()
    for row in session.exec(select(SigningKeyRow).where(SigningKeyRow.state == "active")).all():
        row.state, row.retired_at = "retired", now
        session.add(row)
    promoted = session.exec(select(SigningKeyRow).where(SigningKeyRow.state == "next")).one()
    promoted.state, promoted.activated_at = "active", now
    session.add(promoted)
    session.add(_new_key("next"))
    session.flush()
    return promoted


def active_key(session: Session, settings: Settings) -> SigningKeyRow:
    row = session.exec(select(SigningKeyRow).where(SigningKeyRow.state == "active")).first()
    if row is None:
        ensure_keys(session)
        return active_key(session, settings)
    if _due(row, settings):
        serialize(session, "identity-signing-keys")
        # Another replica may have rotated while this one waited for the lock.
        session.expire_all()
        row = session.exec(select(SigningKeyRow).where(SigningKeyRow.state == "active")).one()
        if _due(row, settings):
            row = rotate(session)
    return row


def _due(row: SigningKeyRow, settings: Settings) -> bool:
    age = utcnow() - aware(row.activated_at or row.created_at)
    return age > timedelta(seconds=settings.signing_key_rotation_seconds)


def jwks(session: Session, settings: Settings) -> dict:
    horizon = utcnow() - timedelta(seconds=settings.access_token_ttl_seconds + 300)
    keys = []
    for row in session.exec(select(SigningKeyRow)).all():
        if row.state == "retired" and aware(row.retired_at) < horizon:
            continue
        keys.append(row.public_jwk)
    return {"keys": sorted(keys, key=lambda k: k["kid"])}


def issue_access_token(key: SigningKeyRow, settings: Settings, *, user_id: str, tenant_id: str,
                       role: str, scopes: list[str], session_id: str = "",
                       not_before: float = 0.0) -> str:
    """`session_id` becomes `sid` (the refresh-token family, revocable by logout). `iat` is
    never earlier than the user's revocation time `not_before`, so a token issued in the same
    second as a revocation, but after it, is not refused with the old ones."""
    now = utcnow()
    issued_at = max(int(now.timestamp()), math.ceil(not_before))
    claims = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": user_id,
        "tid": tenant_id,
        "role": role,
        "scopes": scopes,
        # Space-separated copy (RFC 8693 `scope`), passed to services as one header.
        "scope": " ".join(scopes),
        "iat": issued_at,
        "exp": int((now + timedelta(seconds=settings.access_token_ttl_seconds)).timestamp()),
        "jti": uuid.uuid4().hex,
    }
    if session_id:
        claims["sid"] = session_id
    return jwt.encode(claims, key.private_pem, algorithm=ALGORITHM, headers={"kid": key.kid})
