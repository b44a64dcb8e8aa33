"""The agents service's repositories and row <-> message: agents and their calls, a call's
rows as an interaction begins and ends, and an agent's figures."""

from __future__ import annotations

import json
from collections import OrderedDict
from types import SimpleNamespace
from typing import Any

from google.protobuf import json_format, struct_pb2
from sqlmodel import Session, func, select

from agentmesh.agents.v1 import agents_pb2 as pb
from agentmesh.common.v1 import common_pb2
from mesh.agents.models import AgentRow, AgentVersionRow, CallRow
from mesh.runtime.convert import plain, to_message, writable
from mesh.runtime.db import Database
from mesh.runtime.repository import TenantRepository
from mesh.runtime.versions import Versions

agents = TenantRepository(AgentRow, noun="agent", message=pb.Agent,
                          search_columns=("name", "description"), order_columns=("name", "status"),
                          quota="resource")
agent_versions = TenantRepository(AgentVersionRow, noun="agent_version", name_column=None,
                                  order_columns=("version",), default_order="-version",
                                  quota="version")
# An agent's versions follow the one rule set of mesh.runtime.versions: the row's
# `version_labels` are its version labels (its `labels` are the user's key-value labels).
AGENT_VERSIONS: Versions[AgentVersionRow] = Versions(
    agents, agent_versions, parent="agent_id", noun="agent", labels="version_labels",
    name_in_details=True)
# What a version keeps: the fields a client writes (status and deployment are not versioned).
VERSIONED = tuple(sorted(writable(pb.Agent)))
calls = TenantRepository(CallRow, noun="call", message=pb.Call, name_column=None,
                         order_columns=("started_at", "duration_ms"), default_order="-created_at")


def agent_message(row: AgentRow) -> pb.Agent:
    return to_message(row, pb.Agent)


def snapshot(row: AgentRow) -> dict[str, Any]:
    """The versioned fields of `row` as plain JSON values: what a version records."""
    return {name: plain(getattr(row, name)) for name in VERSIONED}


def at_version(row: AgentRow, version: AgentVersionRow) -> pb.Agent:
    """The agent as it was at `version`: the version's fields over the row's."""
    return at_number(row, version.version, version.agent)


def at_number(row: Any, number: int, fields: dict[str, Any]) -> pb.Agent:
    """The agent as it was at version `number`, whose fields (`AgentVersionRow.agent`) are
    `fields`; `row` is an ORM row or a `current` one."""
    return to_message(row, pb.Agent, version=number,
                      **{k: v for k, v in fields.items() if k in VERSIONED})


async def current(db: Database, tenant_id: str, key: str) -> SimpleNamespace:
    """The agent's row by id or name, read as `GET` reads it (`agents.fetch_values`: one
    indexed SELECT on the raw connection, inline on SQLite), not as an ORM row: an interaction
    reads it before anything else, and the session on a worker thread cost more than the query.
    Its columns are its attributes, JSON as text and times as the database gives them
    (`to_message` reads both), `version_labels` parsed (the version an interaction runs is
    picked from them)."""
    row = SimpleNamespace(**dict(zip(agents.columns, await agents.fetch_values(
        db, tenant_id, key))))
    if isinstance(row.version_labels, str):
        row.version_labels = json.loads(row.version_labels)
    return row


class VersionFields:
    """The fields of agents' versions (`AgentVersionRow.agent`), read once each. A version is
    never changed once written (mesh.runtime.versions), so the one thing to know afresh for
    an interaction is the agent's row, which says which version runs; an agent's deletion
    takes its row with it, so a version kept here of a deleted agent is never reached.
    Keyed by tenant, agent id and number; the `size` most recently used."""

    def __init__(self, size: int = 1024) -> None:
        self.size = size
        self._fields: OrderedDict[tuple[str, str, int], dict[str, Any]] = OrderedDict()

    async def get(self, db: Database, row: Any, number: int) -> dict[str, Any]:
        """Version `number` of `row` (a `current` row)'s fields, or NOT_FOUND
        `AGENT_VERSION_NOT_FOUND` as `AGENT_VERSIONS.get` says it."""
        key = (row.tenant_id, row.id, number)
        found = self._fields.get(key)
        if found is not None:
            self._fields.move_to_end(key)
            return found
        version = await db.read(lambda s: AGENT_VERSIONS.get(s, row, number))
        found = self._fields[key] = version.agent
        if len(self._fields) > self.size:
            self._fields.popitem(last=False)
        return found


def version_message(version: AgentVersionRow, row: AgentRow) -> pb.AgentVersion:
    return to_message(version, pb.AgentVersion, agent=at_version(row, version),
                      labels=AGENT_VERSIONS.labels_at(row, version.version))


def diff_message(row: AgentRow, older: AgentVersionRow,
                 newer: AgentVersionRow) -> common_pb2.VersionDiff:
    out = common_pb2.VersionDiff(resource_id=row.id, from_version=older.version,
                                 to_version=newer.version)
    for name, before, after in Versions.diff(older.agent, newer.agent):
        change = out.changes.add(field=name)
        change.before.CopyFrom(_value(before))
        change.after.CopyFrom(_value(after))
    return out


def _value(value: Any) -> struct_pb2.Value:
    return json_format.ParseDict(value, struct_pb2.Value())


def call_message(row: CallRow) -> pb.Call:
    return to_message(row, pb.Call, metadata=row.call_metadata)


def agent_stats(session: Session, tenant_id: str, agent_key: str) -> pb.AgentStats:
    row = agents.get(session, tenant_id, agent_key)
    scoped = (CallRow.tenant_id == tenant_id, CallRow.agent_id == row.id)
    by_status = dict(session.exec(select(CallRow.status, func.count()).where(*scoped)
                                  .group_by(CallRow.status)).all())
    avg, tokens, last = session.exec(select(
        func.avg(CallRow.duration_ms),
        func.sum(CallRow.prompt_tokens + CallRow.completion_tokens),
        func.max(CallRow.started_at)).where(*scoped)).one()
    out = pb.AgentStats(
        agent_id=row.id, total_calls=sum(by_status.values()),
        successful_calls=by_status.get("CALL_STATUS_COMPLETED", 0),
        failed_calls=by_status.get("CALL_STATUS_FAILED", 0),
        active_calls=by_status.get("CALL_STATUS_ACTIVE", 0),
        average_duration_ms=float(avg or 0), total_tokens=int(tokens or 0),
        deployments=row.deployments)
    if last:
        out.last_call_at.FromDatetime(last)
    return out
