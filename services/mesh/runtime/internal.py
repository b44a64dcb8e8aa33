"""The platform's own credential: one shared token that its processes (the services and the
gateway) present to endpoints only they may use, checked in constant time.

Today that is the OTLP span receiver of the observability service: a span is filed under the
tenant its attributes name, which only the platform's own exporters may be trusted to set (from
the identity the gateway verified). Anything else that reaches the receiver's port is refused.

The token is `AGENTMESH_INTERNAL_TOKEN` (the Helm chart mounts it from a Secret). Without it, a
file `internal-token` in the data directory (mode 0600) is used, made on first run by whichever
process needs it first (`agentmesh up` makes it before any child starts); in production the
setting is required, because every replica must hold the same token.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from mesh.runtime.settings import Settings

HEADER = "x-agentmesh-internal-token"
TOKEN_FILE = "internal-token"


class InternalTokenError(RuntimeError):
    """The internal token is missing (in production) or its file cannot be used."""


def _create(path: Path) -> None:
    """Writes a new token to `path` (0600), whole or not at all: a process starting at the same
    time either finds no file or the complete one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(32) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass  # another process made it first: theirs is used
    finally:
        tmp.unlink()


def token_in(data_dir: Path | str, configured: str = "", production: bool = False) -> str:
    """The token: `configured` when set, else the data directory's file (made when missing)."""
    if configured:
        return configured
    path = Path(data_dir) / TOKEN_FILE
    if not path.exists():
        if production:
            raise InternalTokenError("AGENTMESH_INTERNAL_TOKEN is required in production: the "
                                     "shared token the platform's processes present to each "
                                     "other (the same value for every replica)")
        _create(path)
    try:
        if path.stat().st_mode & 0o077:
            raise InternalTokenError(f"{path} is readable by others; chmod 600 it")
        value = path.read_text().strip()
    except OSError as exc:
        raise InternalTokenError(f"cannot read the internal token {path}: {exc}") from None
    if not value:
        raise InternalTokenError(f"{path} is empty")
    return value


def token(settings: Settings) -> str:
    return token_in(settings.data_dir, settings.internal_token,
                    settings.environment == "production")


def verify(presented: str, expected: str) -> bool:
    """Whether a presented token is the expected one, in constant time."""
    return bool(expected) and hmac.compare_digest(presented.encode(), expected.encode())
