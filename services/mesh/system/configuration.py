"""The runtime configuration as stored (one row per version, audited) and as running processes
keep it: GetRuntimeConfig answers a revision made of the configuration's version, the feature
flags and the cache clears, and the whole document only when the revision changed. It is a long
poll (mesh/runtime/watch.py): a call that knows the current revision is held until it changes
— a write of this process (config, flag, cache clear) marks its transaction with `WAKE_TOPIC`
and answers it at once, another replica's is seen within `live_poll_seconds` — or its wait
ends. The document's sections and validation are in mesh/system/config.py."""

from __future__ import annotations

import logging
from typing import Any

from google.protobuf import json_format
from sqlmodel import Session

from agentmesh.system.v1 import system_pb2 as pb
from mesh import catalog
from mesh.runtime import audit
from mesh.runtime.context import Caller
from mesh.runtime.db import Database
from mesh.runtime.errors import FailedPrecondition, invalid_field
from mesh.runtime.service import Runtime
from mesh.runtime.tables import aware, utcnow
from mesh.runtime.wakeups import mark
from mesh.runtime.watch import Watched
from mesh.system import config
from mesh.system.models import CacheClearRow, ConfigVersionRow
from mesh.system.store import (WAKE_TOPIC, all_flags, flag_message, latest_config,
                               revision_inputs, stamp)

log = logging.getLogger("mesh.system")

Revision = tuple[str, int, CacheClearRow | None]  # (revision, config version, newest clear)


def revision(session: Session) -> Revision:
    version, count, changed, clear = revision_inputs(session)
    text = f"{version}.{count}.{aware(changed).timestamp() if changed else 0}." \
           f"{clear.generation if clear else 0}"
    return text, version, clear


class RuntimeConfiguration:
    def __init__(self, runtime: Runtime) -> None:
        self.db: Database = runtime.database
        self.settings = settings = runtime.settings
        self.revisions = Watched(runtime, WAKE_TOPIC, revision, lambda found: found[0],
                                 lambda: settings.live_poll_seconds)

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
            mark(session, WAKE_TOPIC)
            return row, config.effective(stored, self.settings)

        row, document = await self.db.write(apply)
        log.info("runtime configuration version %d by %s", row.version, caller.user_id)
        return self.message(row, document)

    async def flags(self) -> list[pb.FeatureFlag]:
        return [flag_message(r) for r in await self.db.read(all_flags)]

    async def poll(self, known_revision: str, wait_seconds: float = 0) -> pb.RuntimeConfig:
        """What a running process applies: `unchanged` while it knows the revision (after
        holding the call up to `wait_seconds` for a change)."""
        revision, _, clear = (await self.revisions.poll(known_revision, wait_seconds))[1]
        if known_revision == revision:
            return pb.RuntimeConfig(revision=revision, unchanged=True)
        _, document = await self.current()
        answer = pb.RuntimeConfig(revision=revision, feature_flags=await self.flags(),
                                  cache_generation=clear.generation if clear else 0,
                                  clear_caches=list(clear.caches) if clear else [])
        answer.config.update(document)
        return answer
