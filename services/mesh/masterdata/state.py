"""What the masterdata service keeps for its life: the key-encryption keys."""

from __future__ import annotations

from sqlmodel import select

from mesh.masterdata import keys
from mesh.masterdata.models import SecretRow
from mesh.runtime.service import Runtime


class MasterdataState:
    def __init__(self, runtime: Runtime) -> None:
        # Loaded and checked against the stored secrets once, when the service is built and
        # before the server listens: a missing or wrong key stops the service at start with a
        # clear KeyringError, never garbage later.
        self.keyring = keys.Keyring.load(runtime.settings)
        self.keyring.verify_in(runtime.database, lambda session: set(
            session.exec(select(SecretRow.key_id).distinct()).all()))
