"""Envelope encryption of secrets (AES-256-GCM, `cryptography`), the key-encryption keys, and
their rotation. docs/secrets.md explains the design; in short:

* Every secret has its own random 256-bit data key. The value is encrypted with it
  (AES-256-GCM, random 96-bit nonce) and the data key is encrypted ("wrapped") with the active
  key-encryption key (KEK), whose id is stored with the record.
* Both encryptions authenticate associated data naming the tenant and the secret id (and, for
  the wrap, the KEK id), so a ciphertext copied to another row or another tenant fails to
  decrypt instead of yielding another tenant's value.
* KEKs come from settings (`AGENTMESH_SECRETS_KEK` + `AGENTMESH_SECRETS_KEK_ID`, older ones in
  `AGENTMESH_SECRETS_PREVIOUS_KEKS`) or from a key file made on first run in the data directory
  with mode 0600. They are never written to a database; the database holds only a check value
  per KEK id (a constant encrypted under it) so that a wrong key is refused at start.
* Rotation: a new KEK becomes active, the old ones stay for decryption, and `rotate` re-wraps
  every data key in batches (each its own transaction, resumable, safe while the service runs).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets as pysecrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlmodel import Session, select

from mesh.masterdata.models import KeyCheckRow, SecretRow
from mesh.runtime.settings import Settings
from mesh.runtime.tables import utcnow

if TYPE_CHECKING:
    from mesh.runtime.db import Database

KEY_FILE = "secrets-kek.json"
_NONCE = 12
_CHECK = b"agentmesh key check v1"


class KeyringError(RuntimeError):
    """The key-encryption keys are missing, malformed or not the ones the data was sealed with."""


class DecryptionFailed(Exception):
    """A ciphertext did not authenticate (wrong key, wrong row or tenant, or tampered)."""


def _decode_key(text: str, where: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeyringError(f"{where} is not base64") from None
    if len(key) != 32:
        raise KeyringError(f"{where} must be 32 bytes (base64 of 32 random bytes), not {len(key)}")
    return key


def new_key_id() -> str:
    return f"kek-{utcnow():%Y%m%d%H%M%S}-{pysecrets.token_hex(3)}"


def _write_key_file(path: Path, active: str, keys: dict[str, bytes], *, create: bool) -> None:
    """Atomically (re)writes the key file with mode 0600."""
    document = {"active": active,
                "keys": {kid: base64.b64encode(key).decode() for kid, key in keys.items()}}
    data = json.dumps(document, indent=1).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    if not create:
        os.replace(tmp, path)
        return
    # First run: link the complete file into place, so that a replica starting at the same time
    # either finds no file or the whole one, never a half-written one; it fails if another
    # process made it meanwhile.
    try:
        os.link(tmp, path)
    finally:
        tmp.unlink()


@dataclass
class Keyring:
    """The KEKs by id and which one wraps new data keys."""

    active_id: str
    keys: dict[str, bytes]
    path: Path | None = None  # the key file, when the keys come from one
    _stamp: tuple[int, int] | None = field(default=None, repr=False)

    @classmethod
    def load(cls, settings: Settings) -> "Keyring":
        if settings.secrets_kek:
            if not settings.secrets_kek_id:
                raise KeyringError("AGENTMESH_SECRETS_KEK_ID must name the key")
            keys = {settings.secrets_kek_id: _decode_key(settings.secrets_kek,
                                                         "AGENTMESH_SECRETS_KEK")}
            for item in filter(None, (p.strip() for p in settings.secrets_previous_keks.split(","))):
                kid, sep, text = item.partition("=")
                if not sep or not kid:
                    raise KeyringError("AGENTMESH_SECRETS_PREVIOUS_KEKS entries are id=base64")
                keys.setdefault(kid.strip(), _decode_key(text, f"previous key {kid.strip()!r}"))
            return cls(settings.secrets_kek_id, keys)
        path = Path(settings.data_dir) / KEY_FILE
        if not path.exists():
            if settings.environment == "production":
                raise KeyringError("no key-encryption key: set AGENTMESH_SECRETS_KEK (base64 of 32 "
                                   "random bytes) and AGENTMESH_SECRETS_KEK_ID")
            kid = new_key_id()
            try:
                _write_key_file(path, kid, {kid: AESGCM.generate_key(256)}, create=True)
            except FileExistsError:
                pass  # another process made it first: use theirs
        keyring = cls("", {}, path)
        keyring._read()
        return keyring

    def _read(self) -> None:
        assert self.path is not None
        try:
            stat = self.path.stat()
            if stat.st_mode & 0o077:
                raise KeyringError(f"{self.path} is readable by others; chmod 600 it")
            document = json.loads(self.path.read_text())
            keys = {kid: _decode_key(text, f"key {kid!r} in {self.path}")
                    for kid, text in document["keys"].items()}
            active = document["active"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise KeyringError(f"cannot read the key file {self.path}: {exc}") from None
        if active not in keys:
            raise KeyringError(f"{self.path}: the active key {active!r} is not in its keys")
        self.active_id, self.keys, self._stamp = active, keys, (stat.st_mtime_ns, stat.st_size)

    def refresh(self) -> None:
        """Picks up a rotation made by `agentmesh secrets rotate` while the service runs."""
        if self.path is None:
            return
        try:
            stat = self.path.stat()
        except OSError:
            return
        if (stat.st_mtime_ns, stat.st_size) != self._stamp:
            self._read()

    def add_new_key(self) -> str:
        """Makes a new KEK the active one (key file only); the old ones stay for decryption."""
        if self.path is None:
            raise KeyringError("the keys come from settings: set the new key in "
                               "AGENTMESH_SECRETS_KEK/AGENTMESH_SECRETS_KEK_ID, move the old one to "
                               "AGENTMESH_SECRETS_PREVIOUS_KEKS, restart, then rotate")
        self.refresh()
        kid = new_key_id()
        keys = {**self.keys, kid: AESGCM.generate_key(256)}
        _write_key_file(self.path, kid, keys, create=False)
        self._read()
        return kid

    def key(self, kid: str) -> bytes:
        key = self.keys.get(kid)
        if key is None:
            self.refresh()
            key = self.keys.get(kid)
        if key is None:
            raise KeyringError(f"key-encryption key {kid!r} is not configured")
        return key

    # ---- checks kept in the database -------------------------------------------------------
    def verify_in(self, database: "Database", used_ids: Callable[[Session], set[str]]) -> None:
        """`verify` in its own transaction. Replicas starting together may both record the check
        value of a new key: the one that loses the race verifies against the winner's."""
        for attempt in (1, 2):
            try:
                with database.session(write=True) as session, session.begin():
                    self.verify(session, used_ids(session))
                return
            except sa.exc.IntegrityError:
                if attempt == 2:
                    raise

    def verify(self, session: Session, used_ids: set[str]) -> None:
        """Refuses keys that are not the ones the database was sealed with, and data sealed
        with keys that are not configured; records a check value for new keys."""
        checks = {row.key_id: row for row in session.exec(select(KeyCheckRow)).all()}
        for kid, key in self.keys.items():
            row = checks.get(kid)
            if row is None:
                nonce = os.urandom(_NONCE)
                session.add(KeyCheckRow(key_id=kid, created_at=utcnow(),
                                        check_value=nonce + AESGCM(key).encrypt(nonce, _CHECK,
                                                                                kid.encode())))
                continue
            try:
                AESGCM(key).decrypt(row.check_value[:_NONCE], row.check_value[_NONCE:], kid.encode())
            except InvalidTag:
                raise KeyringError(
                    f"the key-encryption key {kid!r} is not the key this database's secrets were "
                    f"encrypted with (its check value does not decrypt); configure the right key "
                    f"({self.source})") from None
        missing = sorted(used_ids - set(self.keys))
        if missing:
            raise KeyringError(f"secrets are encrypted with key(s) {', '.join(missing)} that are "
                               f"not configured; restore them ({self.source})")

    @property
    def source(self) -> str:
        return str(self.path) if self.path else \
            "AGENTMESH_SECRETS_KEK / AGENTMESH_SECRETS_PREVIOUS_KEKS"


# ---- the envelope --------------------------------------------------------------------------
def _aad(tenant_id: str, secret_id: str) -> bytes:
    return f"agentmesh/secret/v1/{tenant_id}/{secret_id}".encode()


@dataclass
class Sealed:
    key_id: str
    wrapped_key: bytes
    ciphertext: bytes
    fingerprint: str


def fingerprint(data_key: bytes, value: str) -> str:
    digest = hmac.new(data_key, value.encode(), hashlib.sha256).hexdigest()
    return f"hmac-sha256:{digest[:12]}"


def seal(keyring: Keyring, tenant_id: str, secret_id: str, value: str) -> Sealed:
    keyring.refresh()
    aad = _aad(tenant_id, secret_id)
    data_key = AESGCM.generate_key(256)
    nonce = os.urandom(_NONCE)
    ciphertext = nonce + AESGCM(data_key).encrypt(nonce, value.encode(), aad)
    kid = keyring.active_id
    return Sealed(kid, _wrap(keyring.key(kid), kid, aad, data_key), ciphertext,
                  fingerprint(data_key, value))


def _wrap(kek: bytes, kid: str, aad: bytes, data_key: bytes) -> bytes:
    nonce = os.urandom(_NONCE)
    return nonce + AESGCM(kek).encrypt(nonce, data_key, aad + b"|" + kid.encode())


def _unwrap(keyring: Keyring, kid: str, aad: bytes, wrapped: bytes) -> bytes:
    try:
        return AESGCM(keyring.key(kid)).decrypt(wrapped[:_NONCE], wrapped[_NONCE:],
                                                aad + b"|" + kid.encode())
    except (InvalidTag, ValueError):
        raise DecryptionFailed("the data key does not authenticate") from None


def open_value(keyring: Keyring, tenant_id: str, secret_id: str, key_id: str,
               wrapped_key: bytes, ciphertext: bytes) -> str:
    aad = _aad(tenant_id, secret_id)
    data_key = _unwrap(keyring, key_id, aad, wrapped_key)
    try:
        return AESGCM(data_key).decrypt(ciphertext[:_NONCE], ciphertext[_NONCE:], aad).decode()
    except (InvalidTag, ValueError):
        raise DecryptionFailed("the value does not authenticate") from None


def rewrap(keyring: Keyring, tenant_id: str, secret_id: str, key_id: str,
           wrapped_key: bytes) -> tuple[str, bytes]:
    """The data key wrapped by the active KEK (the value's ciphertext is untouched)."""
    aad = _aad(tenant_id, secret_id)
    data_key = _unwrap(keyring, key_id, aad, wrapped_key)
    kid = keyring.active_id
    return kid, _wrap(keyring.key(kid), kid, aad, data_key)


# ---- rotation ------------------------------------------------------------------------------
def rotate(settings: Settings, *, new_key: bool = True, batch: int = 100,
           say: Callable[[str], None] = print) -> tuple[str, int]:
    """Makes a new KEK active (key file) and re-wraps every data key not yet under it, one batch
    per transaction. Interrupted, it is resumed by running it again (with `new_key=False` to
    keep the key). Safe while the service runs: each row is updated only if it has not changed
    since it was read, and the service re-reads the key file when it changes."""
    from mesh import catalog
    from mesh.runtime.db import Database

    keyring = Keyring.load(settings)
    if new_key and keyring.path is not None:
        say(f"new key-encryption key {keyring.add_new_key()} is active "
            f"(old keys stay in {keyring.path} for decryption)")
    database = Database.for_service("masterdata", settings)
    try:
        database.migrate(catalog.definition("masterdata").migration_dirs())
        keyring.verify_in(database, lambda session: set())
        active, done = keyring.active_id, 0
        while True:
            with database.session(write=True) as session, session.begin():
                rows = session.exec(select(SecretRow.id, SecretRow.tenant_id, SecretRow.key_id,
                                           SecretRow.wrapped_key)
                                    .where(SecretRow.key_id != active).limit(batch)).all()
                for secret_id, tenant_id, kid, wrapped in rows:
                    new_kid, new_wrapped = rewrap(keyring, tenant_id, secret_id, kid, wrapped)
                    done += session.execute(
                        sa.update(SecretRow.__table__)
                        .where(SecretRow.id == secret_id, SecretRow.key_id == kid,
                               SecretRow.wrapped_key == wrapped)
                        .values(key_id=new_kid, wrapped_key=new_wrapped)).rowcount
            if not rows:
                break
            say(f"re-wrapped {done} data key(s) so far")
        say(f"done: {done} data key(s) re-wrapped; every secret is under key {active}")
        return active, done
    finally:
        database.close()
