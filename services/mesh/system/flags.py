"""Feature flags: platform-wide, each on for listed tenants and for a stable share of the others
(`mesh.runtime.live.flag_on`); created by an update with `allow_missing`."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format
from sqlmodel import Session

from agentmesh.system.v1 import system_pb2 as pb
from mesh.runtime import audit
from mesh.runtime.context import Caller
from mesh.runtime.errors import NotFound, invalid_field
from mesh.runtime.wakeups import mark
from mesh.system.models import PLATFORM, FeatureFlagRow
from mesh.system.store import WAKE_TOPIC, flags_repo

WRITABLE = {"description", "enabled", "rollout_percentage", "tenant_ids", "rules"}


def requested_update(request: pb.UpdateFeatureFlagRequest) -> dict[str, Any]:
    """The columns an update writes: those the mask names, else the fields it sets."""
    if not request.flag_name:
        raise invalid_field("flag_name", "is required")
    flag = request.feature_flag
    paths = [p.removeprefix("feature_flag.") for p in request.update_mask.paths]
    bad = [p for p in paths if p not in WRITABLE]
    if bad:
        raise invalid_field("update_mask", f"cannot update {', '.join(bad)}; updatable: "
                            + ", ".join(sorted(WRITABLE)))
    names = paths or [f.name for f, _ in flag.ListFields() if f.name in WRITABLE]
    if flag.HasField("rollout_percentage") and not 0 <= flag.rollout_percentage <= 100:
        raise invalid_field("feature_flag.rollout_percentage", "must be between 0 and 100")
    update = {
        "description": flag.description, "enabled": flag.enabled,
        "rollout_percentage": flag.rollout_percentage if flag.HasField(
            "rollout_percentage") else 100,
        "tenant_ids": list(flag.tenant_ids),
        "rules": json_format.MessageToDict(flag.rules) if flag.HasField("rules") else {},
    }
    return {name: update[name] for name in names}


def apply(session: Session, caller: Caller, name: str, update: dict[str, Any],
          allow_missing: bool) -> FeatureFlagRow:
    mark(session, WAKE_TOPIC)  # running processes get the flag at once (GetRuntimeConfig)
    row = flags_repo.find(session, PLATFORM, name, lock=True)
    if row is None:
        if not allow_missing:
            raise NotFound(f"feature flag {name!r} not found", reason="FEATURE_FLAG_NOT_FOUND",
                           details={"feature_flag": name})
        row = FeatureFlagRow(tenant_id=PLATFORM, name=name, updated_by=caller.user_id, **update)
        flags_repo.add(session, row)
        audit.record(session, caller, "create", "feature_flag", row.id, name=row.name,
                     fields=sorted(update))
        return row
    update["updated_by"] = caller.user_id
    return flags_repo.change(session, row, update, caller)
