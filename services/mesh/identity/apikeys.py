"""API keys: what a new key may hold (scopes the contract knows, within its creator's), and
what a presented key acts as (its creator, with the part of its scopes the creator still
holds)."""

from __future__ import annotations

import secrets
from datetime import UTC

from sqlmodel import Session, select

from agentmesh.identity.v1 import identity_pb2 as pb
from mesh.identity.models import ApiKeyRow, UserRow
from mesh.identity.operators import Operators
from mesh.identity.roles import effective_scopes, known_scopes, scopes_for
from mesh.identity.store import secret_hash
from mesh.runtime.context import Caller
from mesh.runtime.errors import InvalidArgument, PermissionDenied, invalid_field
from mesh.runtime.tables import aware, utcnow

API_KEY_PREFIX = "amk_"


def new_key(spec: pb.ApiKey, caller: Caller) -> tuple[ApiKeyRow, str]:
    """The row of a new key of the caller's, and the key itself (shown once)."""
    if not spec.name.strip():
        raise invalid_field("name", "is required")
    if not spec.scopes:
        raise invalid_field("scopes", "name at least one scope, such as agents:read")
    unknown = sorted(set(spec.scopes) - known_scopes())
    if unknown:
        raise InvalidArgument(f"unknown scopes: {', '.join(unknown)}", reason="UNKNOWN_SCOPE",
                              details={"scopes": ",".join(unknown)},
                              field_violations=[("scopes", f"unknown: {', '.join(unknown)}")])
    expires_at = spec.expires_at.ToDatetime(tzinfo=UTC) if spec.HasField("expires_at") else None
    if expires_at is not None and expires_at <= utcnow():
        raise invalid_field("expires_at", "must be in the future")
    beyond = [s for s in spec.scopes if not caller.has_scope(s)]
    if beyond:
        raise PermissionDenied(f"cannot grant scopes you do not hold: {', '.join(beyond)}",
                               reason="SCOPE_NOT_HELD", details={"scopes": ",".join(beyond)})
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKeyRow(tenant_id=caller.tenant_id, name=spec.name.strip(), key_hash=secret_hash(key),
                    prefix=key[:12], scopes=sorted(set(spec.scopes)), created_by=caller.user_id,
                    expires_at=expires_at)
    return row, key


def find(session: Session, key: str) -> tuple[ApiKeyRow | None, UserRow | None]:
    """The key presented and its creator (None for a key no one made, or a gone creator)."""
    found = session.exec(
        select(ApiKeyRow, UserRow)
        .join(UserRow, UserRow.id == ApiKeyRow.created_by, isouter=True)
        .where(ApiKeyRow.key_hash == secret_hash(key))).first()
    return found if found else (None, None)


def acting_scopes(row: ApiKeyRow | None, creator: UserRow | None,
                  operators: Operators) -> list[str] | None:
    """The scopes a call with this key holds now; None when the key does not authenticate."""
    if row is None or row.revoked_at is not None or (
            row.expires_at is not None and aware(row.expires_at) < utcnow()):
        return None
    # A key acts for its creator: it dies with them (deleted, deactivated, other tenant).
    if creator is None or not creator.active or creator.tenant_id != row.tenant_id:
        return None
    # A key never does more than its creator may do now: a demoted creator's keys lose
    # what the new role lacks on their next request (computed here, per request).
    return effective_scopes(row.scopes, scopes_for(pb.Role.Value(creator.role),
                                                   creator.tenant_id in operators))
