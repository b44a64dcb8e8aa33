"""Secrets: what a secret's fields must be, its value sealed into the row and opened again
(mesh.masterdata.keys), and the refusal to rename or delete one a model still names."""

from __future__ import annotations

from typing import Any

import grpc
from sqlmodel import Session

from mesh.masterdata import keys
from mesh.masterdata.checks import check_name, check_tags
from mesh.masterdata.models import SecretRow
from mesh.masterdata.store import models_naming
from mesh.runtime import errors
from mesh.runtime.errors import DomainError, FailedPrecondition, invalid_field
from mesh.runtime.tables import aware, utcnow

MAX_VALUE_BYTES = 64 * 1024


class DataLoss(DomainError):
    code = grpc.StatusCode.DATA_LOSS


def check_fields(fields: dict[str, Any], *, creating: bool) -> None:
    if "name" in fields:
        check_name(fields["name"])
    value = fields.get("value")
    if creating and not value:
        raise invalid_field("value", "is required")
    if value is not None and len(value.encode()) > MAX_VALUE_BYTES:
        raise invalid_field("value", f"at most {MAX_VALUE_BYTES} bytes")
    expires = fields.get("expires_at")
    if expires is not None and expires <= utcnow():
        raise invalid_field("expires_at", "must be in the future")
    if fields.get("secret_type") == "SECRET_TYPE_UNSPECIFIED":
        fields["secret_type"] = "SECRET_TYPE_GENERIC"
    check_tags(fields.get("tags") or [])


def _hint(value: str) -> str:
    return f"…{value[-4:]}" if len(value) >= 12 else "…"


def store_value(keyring: keys.Keyring, row: SecretRow, value: str) -> None:
    """Seals `value` under a new data key into `row` (which has its id), with its hint."""
    sealed = keys.seal(keyring, row.tenant_id, row.id, value)
    row.key_id, row.wrapped_key, row.ciphertext = sealed.key_id, sealed.wrapped_key, \
        sealed.ciphertext
    row.fingerprint, row.value_hint = sealed.fingerprint, _hint(value)


def open_value(keyring: keys.Keyring, row: SecretRow) -> str:
    """The value of an unexpired secret. A key that is not configured here is INTERNAL; a
    ciphertext that does not authenticate for this tenant and row is DATA_LOSS."""
    if row.expires_at is not None and aware(row.expires_at) <= utcnow():
        raise FailedPrecondition(f"secret {row.name!r} expired", reason="SECRET_EXPIRED",
                                 details={"secret": row.name})
    try:
        return keys.open_value(keyring, row.tenant_id, row.id, row.key_id, row.wrapped_key,
                               row.ciphertext)
    except keys.KeyringError as exc:
        raise errors.Internal(f"secret {row.name!r} cannot be decrypted here: {exc}",
                              reason="SECRET_KEY_UNAVAILABLE",
                              details={"secret": row.name, "key_id": row.key_id}) from None
    except keys.DecryptionFailed:
        raise DataLoss(f"secret {row.name!r} does not decrypt for this tenant and id: "
                       "its ciphertext was altered or copied from another record",
                       reason="SECRET_DECRYPTION_FAILED", details={"secret": row.name}) from None


def refuse_if_referenced(session: Session, row: SecretRow, change: str) -> None:
    """A secret a model names as its `secret_ref` is not renamed or deleted under it."""
    users = models_naming(session, row)
    if users:
        raise FailedPrecondition(
            f"secret {row.name!r} is the secret_ref of model(s) {', '.join(users)}; it cannot be "
            f"{change} while they name it", reason="SECRET_IN_USE",
            details={"models": ",".join(users)})
