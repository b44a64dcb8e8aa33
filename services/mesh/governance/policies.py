"""A tenant's policies: Cedar text (or the older effect/match shorthand, turned into Cedar),
checked when saved; every save an immutable version and the tenant's policy set one version
further, so every replica's compiled copy is renewed (mesh.governance.decisions). A draft can
be tried against the tenant's other policies without being saved (DryRunPolicy)."""

from __future__ import annotations

import re
from typing import Any

from sqlmodel import Session

from agentmesh.governance.v1 import governance_pb2 as pb
from mesh.governance import engine
from mesh.governance.decisions import Decider, decision_request
from mesh.governance.models import PolicyRow
from mesh.governance.store import (POLICY_VERSIONS, add_version, bump_policy_set,
                                   enabled_policies, policies)
from mesh.runtime.context import Caller
from mesh.runtime.convert import changes, writable
from mesh.runtime.db import Database
from mesh.runtime.errors import invalid_field
from mesh.runtime.tables import is_uuid

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
WRITABLE = writable(pb.Policy)


def _check_name(name: str) -> None:
    if not name:
        raise invalid_field("name", "is required")
    if not _NAME.match(name) or is_uuid(name):
        raise invalid_field("name", "1-100 letters, digits, '.', '_' or '-', starting with a "
                            "letter or digit, and not a UUID")


def _policy_text(policy: pb.Policy, fields: dict[str, Any]) -> str:
    """The Cedar text of a policy written either in `cedar` or in the effect/match shorthand;
    validated (a syntax error names the line)."""
    if policy.HasField("rules") and policy.rules.fields:
        raise invalid_field("rules", "not supported; write conditions in `cedar` (when { ... })")
    if policy.HasField("rate_limit"):
        raise invalid_field("rate_limit", "not supported; rate limits are the gateway's "
                            "(GET /api/v1/governance/rate-limits)")
    text = fields.get("cedar") or ""
    if not text.strip():
        effect = fields.get("effect") or "POLICY_EFFECT_UNSPECIFIED"
        if effect == "POLICY_EFFECT_UNSPECIFIED":
            raise invalid_field("cedar", "is required (or give `effect` and `match`)")
        match = fields.get("match") or {}
        text = engine.shorthand(effect, list(match.get("intents", [])),
                                list(match.get("resources", [])))
    engine.check_policy_text(text)
    return text


def _versioned(session: Session, row: PolicyRow, caller: Caller) -> PolicyRow:
    """The policy as saved now, also as its next immutable version; the tenant's policy set one
    version further."""
    add_version(session, row, caller)
    bump_policy_set(session, caller.tenant_id)
    return row


async def _change(db: Database, cache: engine.PolicyCache, tenant_id: str, change):
    """A change to the tenant's policies, written, then its compiled copy dropped here (other
    replicas see the policy-set version move within the cache's time)."""
    result = await db.write(change)
    cache.invalidate(tenant_id)
    return result


async def create(db: Database, cache: engine.PolicyCache, caller: Caller,
                 policy: pb.Policy) -> PolicyRow:
    _check_name(policy.name)
    fields = changes(policy, WRITABLE)
    text = _policy_text(policy, fields)
    row = PolicyRow(tenant_id=caller.tenant_id, name=policy.name,
                    description=policy.description,
                    effect=pb.PolicyEffect.Name(policy.effect), priority=policy.priority,
                    match=fields.get("match") or {}, cedar=text,
                    enabled=policy.enabled if policy.HasField("enabled") else True,
                    version=1, created_by=caller.user_id)

    def add(session: Session) -> PolicyRow:
        return _versioned(session, policies.add(session, row), caller)

    return await _change(db, cache, caller.tenant_id, add)


async def update(db: Database, cache: engine.PolicyCache, caller: Caller, policy_id: str,
                 policy: pb.Policy, mask: list[str]) -> PolicyRow:
    update = changes(policy, WRITABLE, mask)
    if "name" in update:
        _check_name(update["name"])
    if "rules" in update and update["rules"]:
        raise invalid_field("rules", "not supported; write conditions in `cedar`")
    if "rate_limit" in update and update["rate_limit"]:
        raise invalid_field("rate_limit", "not supported; rate limits are the gateway's")

    def apply(session: Session) -> PolicyRow:
        row = policies.get(session, caller.tenant_id, policy_id, lock=True)
        for key in ("name", "description", "priority", "enabled"):
            if key in update:
                setattr(row, key, update[key])
        if "cedar" in update and update["cedar"].strip():
            engine.check_policy_text(update["cedar"])
            row.cedar = update["cedar"]
        elif "effect" in update or "match" in update:
            effect = update.get("effect", row.effect)
            match = update.get("match", row.match) or {}
            row.effect = effect
            row.match = match
            if effect == "POLICY_EFFECT_UNSPECIFIED":
                raise invalid_field("effect", "must be POLICY_EFFECT_ALLOW or POLICY_EFFECT_DENY")
            row.cedar = engine.shorthand(effect, list(match.get("intents", [])),
                                         list(match.get("resources", [])))
            engine.check_policy_text(row.cedar)
        row.version += 1
        return _versioned(session, policies.save(session, row), caller)

    return await _change(db, cache, caller.tenant_id, apply)


async def move_label(db: Database, cache: engine.PolicyCache, caller: Caller, policy_id: str,
                     label: str, version: int) -> PolicyRow:
    """`label` pointed at `version` (audited); the policy set one version further, since the
    `production` label decides which version is evaluated."""
    def move(session: Session) -> PolicyRow:
        row = POLICY_VERSIONS.move_label(session, caller, policy_id, label, version)
        bump_policy_set(session, caller.tenant_id)
        return row

    return await _change(db, cache, caller.tenant_id, move)


async def drop_label(db: Database, cache: engine.PolicyCache, caller: Caller, policy_id: str,
                     label: str) -> PolicyRow:
    def drop(session: Session) -> PolicyRow:
        row = POLICY_VERSIONS.drop_label(session, caller, policy_id, label)
        bump_policy_set(session, caller.tenant_id)
        return row

    return await _change(db, cache, caller.tenant_id, drop)


async def delete(db: Database, cache: engine.PolicyCache, caller: Caller, policy_id: str) -> str:
    def remove(session: Session) -> str:
        row = policies.get(session, caller.tenant_id, policy_id, lock=True)
        policies.delete(session, row)
        bump_policy_set(session, caller.tenant_id)
        return row.name

    return await _change(db, cache, caller.tenant_id, remove)


async def dry_run(db: Database, decider: Decider, caller: Caller,
                  request: pb.DryRunPolicyRequest) -> pb.DryRunPolicyResponse:
    """How the tenant's policies would decide `request.request` with the draft saved (in place
    of the policy of its name): nothing is saved or recorded."""
    if not request.HasField("policy"):
        raise invalid_field("policy", "is required")
    draft = request.policy
    text = _policy_text(draft, changes(draft, WRITABLE))
    name = draft.name or "draft"
    current = await decider.compiled(caller.tenant_id)
    existing = await db.read(lambda s: enabled_policies(s, caller.tenant_id, except_name=name))
    compiled = engine.CompiledPolicies.build(
        current.version if current else 0, [*existing, ("", name, 0, text)])
    labels = {k: (v if not v.endswith("@0") else f"{name}@draft")
              for k, v in compiled.labels.items()}
    compiled = engine.CompiledPolicies(compiled.version, compiled.policy_set, labels,
                                       compiled.ids)
    candidate = decision_request(request.request, caller)
    candidate.validate()
    candidate.usage = await decider.usage_context(caller.tenant_id)
    outcome = engine.evaluate(compiled, candidate)
    return pb.DryRunPolicyResponse(allowed=outcome.allowed, reason=outcome.reason,
                                   matching_policies=outcome.matching, errors=outcome.errors)
