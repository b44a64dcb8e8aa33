"""Tokens forged as an attacker would forge them, against a running mesh: its real signing key
(read from the identity database), claims shaped like the ones identity signs, and every
forgery the gateway must refuse (tests/e2e/test_security.py, tests/e2e/test_gateway_auth.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sqlite3
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


def signing_key(mesh) -> tuple[str, str]:
    """(kid, private key PEM) of the mesh's active signing key, from the identity database."""
    with sqlite3.connect(mesh.data_dir / "identity.db") as db:
        return db.execute(
            "SELECT kid, private_pem FROM signing_keys WHERE state='active'").fetchone()


def claims(tenant, **overrides) -> dict:
    """The claims identity puts in an access token for the tenant's admin; an override of None
    leaves that claim out."""
    now = int(time.time())
    found = {"iss": "agentmesh", "aud": "agentmesh-api", "sub": tenant.user_id,
             "tid": tenant.tenant_id, "scopes": ["*"], "scope": "*", "iat": now,
             "exp": now + 300}
    found.update(overrides)
    return {k: v for k, v in found.items() if v is not None}


def b64url(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def signed(tenant, pem: str, kid: str, **overrides) -> str:
    """A token signed with the mesh's own key: what identity would issue."""
    return jwt.encode(claims(tenant, **overrides), pem, "ES256", headers={"kid": kid})


def forged(case: str, tenant, kid: str, pem: str) -> str:
    """A token the gateway must refuse, by name:
    alg_none              unsigned (`alg: none`) with the real kid
    hs256_with_public_key HMAC with the public key as the secret (algorithm confusion)
    other_key             signed by another key under the real kid (also foreign_key_real_kid)
    expired               expired two minutes ago
    expired_beyond_skew   expired 20 s ago: beyond the gateway's 5 s of clock skew
    no_exp, future_nbf, wrong_audience, wrong_issuer, garbage
    """
    now = int(time.time())
    if case == "alg_none":
        return f"{b64url({'alg': 'none', 'typ': 'JWT', 'kid': kid})}.{b64url(claims(tenant))}."
    if case == "hs256_with_public_key":
        public = serialization.load_pem_private_key(pem.encode(), None).public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        header = b64url({"alg": "HS256", "typ": "JWT", "kid": kid})
        body = b64url(claims(tenant))
        signature = base64.urlsafe_b64encode(hmac.new(
            public, f"{header}.{body}".encode(), hashlib.sha256).digest()).rstrip(b"=").decode()
        return f"{header}.{body}.{signature}"
    if case in ("other_key", "foreign_key_real_kid"):
        return jwt.encode(claims(tenant), ec.generate_private_key(ec.SECP256R1()), "ES256",
                          headers={"kid": kid})
    overrides = {
        "expired": {"exp": now - 120, "iat": now - 600},
        "expired_beyond_skew": {"exp": now - 20, "iat": now - 600},
        "no_exp": {"exp": None},
        "future_nbf": {"nbf": now + 600},
        "wrong_audience": {"aud": "someone-else"},
        "wrong_issuer": {"iss": "evil"},
    }
    if case in overrides:
        return signed(tenant, pem, kid, **overrides[case])
    if case == "garbage":
        return "not.a.jwt"
    raise ValueError(f"no forgery named {case!r}")
