"""The runtime configuration as stored (one row per version, audited) and as running processes
poll it: GetRuntimeConfig answers a revision made of the configuration's version, the feature
flags and the cache clears, and the whole document only when the revision changed. The
document's sections and validation are in mesh/system/config.py."""

from __future__ import annotations

import logging
import time
from typing import Any

from google.protobuf import json_format
from sqlmodel import Session

from agentmesh.system.v1 import system_pb2 as pb
from mesh import catalog
from mesh.runtime import audit
from mesh.runtime.context import Caller
from mesh.runtime.db import Database
from mesh.runtime.errors import FailedPrecondition, invalid_field
from mesh.runtime.settings import Settings
from mesh.runtime.tables import aware, utcnow
from mesh.system import config
from mesh.system.models import CacheClearRow, ConfigVersionRow
from mesh.system.store import (all_flags, flag_message, latest_config, revision_inputs, stamp)

log = logging.getLogger("mesh.system")
_REVISION_SECONDS = 1.0  # how long a computed revision answers the polls


class RuntimeConfiguration:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self._revision: tuple[float, tuple[str, int, CacheClearRow | None]] | None = None

    def changed(self) -> None:
        """The next poll computes the revision again (a write of this process changed it)."""
        self._revision = None

    async def current(self) -> tuple[ConfigVersionRow | None, dict[str, Any]]:
        row = await self.db.read(latest_config)
        return row, config.effective(row.config if row else {}, self.settings)

    def message(self, row: ConfigVersionRow | None, document: dict) -> pb.SystemConfig:
        message = pb.SystemConfig(version=row.version if row else 0,
                                  updated_by=row.updated_by if row else "")
        message.config.update({**document, config.READ_ONLY: config.settings_view(self.settings)})
        if row is not None:
            message.updated_at.CopyFrom(stamp(aware(row.created_at)))
        return message

    async def update(self, caller: Caller, request: pb.UpdateSystemConfigRequest
                     ) -> pb.SystemConfig:
        """A new version: the sections in the body (or those the mask names, a masked section
        absent from the body going back to its default) over the current one."""
        if not request.HasField("config") or not request.config.HasField("config"):
            raise invalid_field("config.config", "is required")
        body = json_format.MessageToDict(request.config.config)
        paths = list(request.update_mask.paths)
        sections: list[str] = []
        for path in paths:
            name = path.removeprefix("config.")
            if name not in config.SECTIONS:
                raise invalid_field("update_mask", f"cannot update {path!r}; updatable: "
                                    + ", ".join(f"config.{s}" for s in config.SECTIONS))
            sections.append(name)
        if config.READ_ONLY in body and config.plain(body[config.READ_ONLY]) != config.plain(
                config.settings_view(self.settings)):
            raise invalid_field(f"config.{config.READ_ONLY}",
                                "is read-only: these settings change only with a restart")
        checked = config.validate(body, catalog.names())
        if paths:
            checked = {name: checked[name] for name in sections if name in checked}

        def apply(session: Session) -> tuple[ConfigVersionRow, dict]:
            current = latest_config(session)
            version = current.version if current else 0
            if request.expected_version and request.expected_version != version:
                raise FailedPrecondition(
                    f"the configuration is at version {version}, not "
                    f"{request.expected_version}; read it again and retry",
                    reason="CONFIG_VERSION_MISMATCH",
                    details={"version": str(version),
                             "expected_version": str(request.expected_version)})
            stored = dict(current.config) if current else {}
            for name in sections:  # a masked section absent from the body is reset
                stored.pop(name, None)
            stored.update(checked)
            row = ConfigVersionRow(version=version + 1, config=stored,
                                   updated_by=caller.user_id, tenant_id=caller.tenant_id,
                                   created_at=utcnow())
            session.add(row)
            audit.record(session, caller, "update", "system_config", str(version + 1),
                         sections=sorted(checked) or sorted(sections), previous=version)
            return row, config.effective(stored, self.settings)

        row, document = await self.db.write(apply)
        log.info("runtime configuration version %d by %s", row.version, caller.user_id)
        self.changed()
        return self.message(row, document)

    async def flags(self) -> list[pb.FeatureFlag]:
        return [flag_message(r) for r in await self.db.read(all_flags)]

    async def revision(self) -> tuple[str, int, CacheClearRow | None]:
        cached = self._revision
        if cached is not None and time.monotonic() - cached[0] < _REVISION_SECONDS:
            return cached[1]
        version, count, changed, clear = await self.db.read(revision_inputs)
        revision = f"{version}.{count}.{aware(changed).timestamp() if changed else 0}." \
                   f"{clear.generation if clear else 0}"
        value = (revision, version, clear)
        self._revision = (time.monotonic(), value)
        return value

    async def poll(self, known_revision: str) -> pb.RuntimeConfig:
        """What a running process applies: `unchanged` while it knows the revision."""
        revision, _, clear = await self.revision()
        if known_revision == revision:
            return pb.RuntimeConfig(revision=revision, unchanged=True)
        _, document = await self.current()
        answer = pb.RuntimeConfig(revision=revision, feature_flags=await self.flags(),
                                  cache_generation=clear.generation if clear else 0,
                                  clear_caches=list(clear.caches) if clear else [])
        answer.config.update(document)
        return answer
