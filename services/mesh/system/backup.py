"""Online backups of every service's database, and `agentmesh restore`.

SQLite (the default): each service's file is copied with SQLite's online backup API
(`sqlite3.Connection.backup`), which reads a consistent snapshot while the services keep
writing (WAL readers never block writers), into `DATA_DIR/backups/<time>-<id>/<service>.db`,
next to a `manifest.json`: format, id, time, description, database kind, and per service its
file, size, SHA-256 and the Alembic revisions the copy is at. The manifest is written last, so a
directory without one is an unfinished backup.

PostgreSQL: `pg_dump --format=custom --schema=<service>` per service (each service owns one
schema), when the `pg_dump` binary is on PATH; each dump is its own consistent snapshot
(pg_dump runs in one repeatable-read transaction), but dumps of different schemas are taken one
after another, not in one snapshot. Without the binary a backup is refused (FAILED_PRECONDITION).
Restore such a backup with `pg_restore --dbname=URL <service>.dump` per service.

The secrets key-encryption key file (`secrets-kek.json`) is never in a backup: a backup that
carried its own key would make the encryption of secrets pointless. Restore it separately, or set
`AGENTMESH_SECRETS_KEK` (docs/secrets.md).

`restore(backup_dir, data_dir)` checks every checksum first, refuses a data directory that
already holds any of the databases, then copies the files into place; `agentmesh up --data-dir`
(or `agentmesh serve`) on it starts from that state.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mesh.runtime.errors import FailedPrecondition, InvalidArgument

FORMAT = 1
MANIFEST = "manifest.json"


class RestoreError(Exception):
    pass


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _sqlite_revisions(path: Path) -> list[str]:
    connection = sqlite3.connect(path)
    try:
        return sorted(r[0] for r in connection.execute("SELECT version_num FROM alembic_version"))
    except sqlite3.Error:
        return []
    finally:
        connection.close()


def copy_sqlite(source: Path, target: Path) -> None:
    """A consistent copy of a live SQLite database (the online backup API), in one step: a
    backup copied in several steps starts over whenever another connection writes between two
    of them, so a busy database (observability's, taking spans all the time) might never finish.
    One step reads one snapshot; in WAL mode writers go on meanwhile."""
    src = sqlite3.connect(source, timeout=30)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst, pages=-1)
    finally:
        dst.close()
        src.close()


@dataclass
class Plan:
    """What a backup will copy: checked before it is accepted."""

    services: list[str]
    kind: str  # "sqlite" or "postgresql"


def plan(settings, requested: list[str], known: list[str]) -> Plan:
    unknown = sorted(set(requested) - set(known))
    if unknown:
        raise InvalidArgument(f"unknown services: {', '.join(unknown)}",
                              field_violations=[("backup.services", f"unknown service {s!r}")
                                                for s in unknown])
    if settings.database_url:
        if shutil.which("pg_dump") is None:
            raise FailedPrecondition(
                "backups of PostgreSQL need the pg_dump binary on the system service's PATH; "
                "without it, back the database up with pg_dump yourself (one schema per "
                "service; see docs/system.md)", reason="PG_DUMP_MISSING")
        return Plan(list(requested or known), "postgresql")
    names = [n for n in (requested or known) if (Path(settings.data_dir) / f"{n}.db").exists()]
    return Plan(names, "sqlite")


def _pg_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def run(settings, backup_plan: Plan, description: str = "", backup_id: str = "") -> tuple[Path, dict]:
    """Writes the backup; (its directory, its manifest)."""
    backup_id = backup_id or str(uuid.uuid4())
    now = datetime.now(UTC)
    root = Path(settings.data_dir) / "backups"
    target = root / f"{now:%Y%m%dT%H%M%SZ}-{backup_id[:8]}"
    target.mkdir(parents=True, exist_ok=False)
    entries: dict[str, Any] = {}
    for name in backup_plan.services:
        if backup_plan.kind == "sqlite":
            file = target / f"{name}.db"
            copy_sqlite(Path(settings.data_dir) / f"{name}.db", file)
            revisions = _sqlite_revisions(file)
        else:
            file = target / f"{name}.dump"
            subprocess.run(["pg_dump", "--format=custom", f"--schema={name}", f"--file={file}",
                            _pg_url(settings.database_url)], check=True, capture_output=True,
                           timeout=3600)
            from mesh.runtime.db import Database

            database = Database.for_service(name, settings)
            try:
                revisions = database.revisions()
            finally:
                database.close()
        entries[name] = {"file": file.name, "bytes": file.stat().st_size, "sha256": sha256(file),
                         "migration_revisions": revisions}
    manifest = {"format": FORMAT, "id": backup_id, "created_at": now.isoformat(),
                "description": description, "database": backup_plan.kind,
                "services": entries,
                "secrets_key": "not included: restore secrets-kek.json separately or set "
                               "AGENTMESH_SECRETS_KEK"}
    partial = target / (MANIFEST + ".tmp")
    partial.write_text(json.dumps(manifest, indent=1))
    os.replace(partial, target / MANIFEST)
    return target, manifest


def restore(backup_dir: Path, data_dir: Path, force: bool = False) -> dict:
    """Brings `data_dir` to the state of the backup; the manifest."""
    manifest_path = Path(backup_dir) / MANIFEST
    if not manifest_path.is_file():
        raise RestoreError(f"{backup_dir} has no {MANIFEST}: not a (finished) backup")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as exc:
        raise RestoreError(f"{manifest_path} is not JSON: {exc}") from exc
    if manifest.get("format") != FORMAT:
        raise RestoreError(f"backup format {manifest.get('format')!r} is not {FORMAT}")
    if manifest.get("database") != "sqlite":
        raise RestoreError("a PostgreSQL backup is restored with pg_restore, one dump per "
                           "service: pg_restore --dbname=URL <service>.dump (docs/system.md)")
    services = manifest.get("services") or {}
    for name, entry in services.items():
        file = Path(backup_dir) / entry["file"]
        if not file.is_file():
            raise RestoreError(f"{name}: {file} is missing")
        if sha256(file) != entry["sha256"]:
            raise RestoreError(f"{name}: {file} does not match its checksum; the backup is "
                               "damaged")
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    present = [n for n in services if (data_dir / f"{n}.db").exists()]
    if present and not force:
        raise RestoreError(f"{data_dir} already holds databases ({', '.join(present)}); "
                           "restore into a new directory, or pass --force to replace them")
    for name, entry in services.items():
        final = data_dir / f"{name}.db"
        for suffix in ("-wal", "-shm"):
            Path(f"{final}{suffix}").unlink(missing_ok=True)
        partial = data_dir / f".{name}.db.restoring"
        shutil.copyfile(Path(backup_dir) / entry["file"], partial)
        os.replace(partial, final)
    return manifest
