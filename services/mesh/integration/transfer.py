"""A tenant's setup moved in and out: master data synchronized from a document (given, or read
through an API connection), and bundles (mesh.integration.bundle) exported, validated and
imported with a conflict strategy."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from google.protobuf import field_mask_pb2, json_format
from sqlmodel import Session

from agentmesh.integration.v1 import integration_pb2 as pb
from mesh.integration import api_connections, bundle as bundles, calls, connections, documents
from mesh.integration import webhooks as webhook_service
from mesh.integration.models import ApiConnectionRow, WebhookRow
from mesh.integration.store import (api_connections as connection_repo, connection_dict,
                                    connection_rows, record_activity)
from mesh.integration.store import webhooks as webhook_repo
from mesh.runtime import audit, errors
from mesh.runtime.context import Caller
from mesh.runtime.errors import invalid_field
from mesh.runtime.tables import utcnow

if TYPE_CHECKING:
    from mesh.integration.state import IntegrationState

SYNC_KINDS = ("skills", "constraints", "models", "prompts")
_VERSIONED = ("prompts", "templates")


async def _activity(state: "IntegrationState", caller: Caller, kind: str,
                    **details: Any) -> None:
    await state.db.write(lambda s: record_activity(s, caller, kind, details))


def _counts(results: list[pb.EntityResult], actions: tuple[str, ...]) -> dict[str, int]:
    return {a: sum(1 for r in results if r.action == a) for a in actions}


# ---- master-data sync -------------------------------------------------------------------------
async def _sync_document(state: "IntegrationState", caller: Caller,
                         request: pb.SyncMasterDataRequest) -> Any:
    if request.HasField("document"):
        return calls.struct_value(request, "document")
    connection = await api_connections.connection(state, caller, request.api_connection_id)
    headers = await api_connections.headers(state, connection, "master-data sync")
    raw = await documents.fetch(state.egress, connections.join(connection["base_url"],
                                                               request.path), headers)
    return documents.parse_document(raw, "path")


async def sync_master_data(state: "IntegrationState", caller: Caller,
                           request: pb.SyncMasterDataRequest) -> pb.SyncMasterDataResponse:
    """Each entity of the document created, or updated by name (`mode` says what to do with
    one that exists and differs); per-entity results, nothing written with `dry_run`."""
    if bool(request.api_connection_id) == request.HasField("document"):
        raise invalid_field("document", "give either document or api_connection_id")
    kinds = list(request.entity_types) or list(SYNC_KINDS)
    unknown = [k for k in kinds if k not in SYNC_KINDS]
    if unknown:
        raise invalid_field("entity_types", f"unknown {unknown[0]!r}; use "
                            f"{', '.join(SYNC_KINDS)}")
    document = await _sync_document(state, caller, request)
    if not isinstance(document, dict):
        raise invalid_field("document", "must be an object of skills, constraints, prompts, "
                            "models")
    extra = [k for k in document if k not in SYNC_KINDS]
    if extra:
        raise invalid_field(f"document.{str(extra[0])[:100]}",
                            f"unknown section; use {', '.join(SYNC_KINDS)}")
    mode = request.mode or pb.IMPORT_MODE_OVERWRITE
    if mode == pb.IMPORT_MODE_RENAME:
        raise invalid_field("mode", "rename is for imports; sync updates by name")
    results: list[pb.EntityResult] = []
    for key in SYNC_KINDS:
        if key not in kinds or key not in document:
            continue
        entities = document[key]
        if not isinstance(entities, list) or len(entities) > bundles.MAX_ENTITIES:
            raise invalid_field(f"document.{key}", f"a list of at most "
                                f"{bundles.MAX_ENTITIES} objects")
        kind = bundles.BY_KEY[key]
        existing = {m.name: m for m in await bundles.read_kind(state.peers, kind)}
        for i, entity in enumerate(entities):
            results.append(await _sync_one(state, kind, f"document.{key}[{i}]", entity,
                                           existing, mode, request.dry_run))
    counts = _counts(results, ("created", "updated", "unchanged", "skipped", "failed"))
    if not request.dry_run:
        await _activity(state, caller, "sync", created=counts["created"],
                         updated=counts["updated"])
        await state.events.publish(caller.tenant_id, "master_data.synced", counts)
    return pb.SyncMasterDataResponse(
        created=counts["created"], updated=counts["updated"],
        skipped=counts["skipped"] + counts["unchanged"], failed=counts["failed"],
        results=results, dry_run=request.dry_run, synced_at=utcnow())


async def _sync_one(state: "IntegrationState", kind: bundles.Kind, where: str, entity: Any,
                    existing: dict[str, Any], mode: int, dry_run: bool) -> pb.EntityResult:
    name = entity.get("name") if isinstance(entity, dict) else None
    result = pb.EntityResult(entity_type=kind.noun, name=str(name or "")[:100])
    try:
        message = calls.parse(entity, kind.message, where)
        if not message.name:
            raise invalid_field(f"{where}.name", "is required")
        stub = state.peers.stub(kind.stub)
        current = existing.get(message.name)
        if current is None:
            result.action = "created"
            if not dry_run:
                made = await calls.call(kind.service, getattr(stub, f"Create{kind.cls}"),
                                        kind.request(f"Create{kind.cls}", **{kind.noun: message}))
                result.id = made.id
            return result
        result.id = current.id
        given = calls.to_dict(message)
        now = calls.to_dict(current)
        if all(now.get(k) == v for k, v in given.items()):
            result.action = "unchanged"
            return result
        if mode == pb.IMPORT_MODE_SKIP_EXISTING:
            result.action = "skipped"
            return result
        if mode == pb.IMPORT_MODE_FAIL_ON_EXISTING:
            raise errors.AlreadyExists(f"{kind.noun} {message.name!r} exists")
        result.action = "updated"
        if not dry_run:
            await calls.call(kind.service, getattr(stub, f"Update{kind.cls}"),
                             kind.request(f"Update{kind.cls}", **{
                                 f"{kind.noun}_id": current.id, kind.noun: message,
                                 "update_mask": field_mask_pb2.FieldMask(paths=sorted(given))}))
    except errors.DomainError as exc:
        result.action, result.error = "failed", calls.describe(exc)
    return result


# ---- export -----------------------------------------------------------------------------------
async def export(state: "IntegrationState", caller: Caller, kinds: list[str],
                 ids: set[str]) -> dict[str, Any]:
    """The bundle of `kinds` (every kind when empty), or of the entities named in `ids`."""
    kinds = kinds or bundles.ALL_KEYS
    unknown = [k for k in kinds if k not in bundles.ALL_KEYS]
    if unknown:
        raise invalid_field("entity_types", f"unknown {unknown[0]!r}; use "
                            f"{', '.join(bundles.ALL_KEYS)}")
    rows = await state.db.read(lambda s: connection_rows(s, caller.tenant_id))
    hooks = await state.db.read(lambda s: _webhook_rows(s, caller.tenant_id))
    document = await bundles.export(state.peers, [connection_dict(r) for r in rows], kinds, ids,
                                    webhooks=[_webhook_dict(r) for r in hooks])
    await _activity(state, caller, "export", kinds=",".join(kinds))
    return document


def _webhook_rows(session: Session, tenant_id: str) -> list[WebhookRow]:
    from sqlmodel import select
    return list(session.exec(select(WebhookRow).where(WebhookRow.tenant_id == tenant_id)).all())


def _webhook_dict(row: WebhookRow) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "url": row.url, "events": sorted(row.events),
            "active": row.active}


# ---- import -----------------------------------------------------------------------------------
async def _existing(state: "IntegrationState", keys: set[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for kind in bundles.KINDS:
        if kind.key in keys:
            out[kind.key] = {getattr(m, kind.name_field): m
                             for m in await bundles.read_kind(state.peers, kind)}
    return out


async def import_bundle(state: "IntegrationState", caller: Caller, document: Any, mode: int,
                        dry_run: bool) -> pb.ImportDataResponse:
    """Every problem of the bundle at once (400 BUNDLE_INVALID), else each entity applied in
    dependency order with the conflict strategy `mode` (skip by default)."""
    if mode not in pb.ImportMode.values():
        raise invalid_field("mode", "unknown import mode")
    problems = bundles.check_shape(document)
    problems.raise_if_any()
    present = {k for k in bundles.ALL_KEYS if document.get(k)}
    needed = set(present)
    if "workflows" in present:
        needed |= {"agents", "tools"}
    existing = await _existing(state, needed)
    local = await state.db.read(lambda s: {r.name: r for r in connection_rows(s,
                                                                              caller.tenant_id)})
    hooks = await state.db.read(lambda s: {r.name: r for r in _webhook_rows(s, caller.tenant_id)})
    names = {k: set(v) for k, v in existing.items()}
    names["api_connections"] = set(local)
    names["webhooks"] = set(hooks)
    bundles.check_against(problems, document, names)
    problems.raise_if_any()
    mode = mode or pb.IMPORT_MODE_SKIP_EXISTING
    renames: dict[str, dict[str, str]] = {}
    taken = {k: set(names.get(k, set())) | {bundles.name_of(k, e) for e in document.get(k)
                                            or []} for k in bundles.ALL_KEYS}
    results: list[pb.EntityResult] = []
    for key in bundles.ALL_KEYS:
        for entity in document.get(key) or []:
            entity = json.loads(json.dumps(entity))
            bundles.rewrite_references(key, entity, renames)
            results.append(await _import_one(state, caller, key, entity, existing.get(key, {}),
                                             hooks if key == "webhooks" else local, mode,
                                             dry_run, renames, taken))
    counts = _counts(results, ("created", "updated", "skipped", "failed"))
    if not dry_run:
        await _activity(state, caller, "import", **counts)
        await state.events.publish(caller.tenant_id, "data.imported", counts)
    return pb.ImportDataResponse(created=counts["created"], updated=counts["updated"],
                                 skipped=counts["skipped"], failed=counts["failed"],
                                 results=results, dry_run=dry_run)


def _rename(key: str, name: str, entity: dict[str, Any], taken: dict[str, set[str]],
            renames: dict[str, dict[str, str]]) -> str:
    """The first free `<name>-N` (N from 2), set on the entity and remembered, so that later
    references to `name` in the bundle follow it."""
    n = 2
    while f"{name[:90]}-{n}" in taken[key]:
        n += 1
    new = f"{name[:90]}-{n}"
    taken[key].add(new)
    renames.setdefault(key, {})[name] = new
    field = bundles.BY_KEY[key].name_field if key in bundles.BY_KEY else "name"
    title = f"{entity.get('name', name)} ({n})"[:200]
    for target in [entity, *(v for v in entity.get("versions") or [] if isinstance(v, dict)
                             and key in ("agents", "workflows", "policies"))]:
        # every version of the copy carries the copy's name
        if target is entity or target.get(field) == name:
            target[field] = new
        if key == "workflows":
            target["name"] = title
    return new


async def _import_one(state: "IntegrationState", caller: Caller, key: str,
                      entity: dict[str, Any], existing: dict[str, Any],
                      local: dict[str, ApiConnectionRow], mode: int, dry_run: bool,
                      renames: dict[str, dict[str, str]],
                      taken: dict[str, set[str]]) -> pb.EntityResult:
    name = bundles.name_of(key, entity)
    noun = bundles.BY_KEY[key].noun if key in bundles.BY_KEY else "api_connection"
    result = pb.EntityResult(entity_type=noun, name=name)
    present = existing.get(name) if key in bundles.BY_KEY else local.get(name)
    try:
        if present is not None:
            if mode == pb.IMPORT_MODE_SKIP_EXISTING:
                result.action, result.id = "skipped", getattr(present, "id", name)
                return result
            if mode == pb.IMPORT_MODE_FAIL_ON_EXISTING:
                raise errors.AlreadyExists(f"{noun} {name!r} already exists",
                                           reason="ALREADY_EXISTS")
            if mode == pb.IMPORT_MODE_RENAME and key in bundles.BY_KEY and \
                    not bundles.BY_KEY[key].renamable:
                result.action, result.id = "skipped", getattr(present, "id", name)
                return result
            if mode == pb.IMPORT_MODE_RENAME:
                result.name = _rename(key, name, entity, taken, renames)
                result.original_name = name
                present = None
        if dry_run:
            result.action = "created" if present is None else "updated"
            return result
        if key == "api_connections":
            result.id = await _import_connection(state, caller, entity, present)
        elif key == "webhooks":
            result.id = await _import_webhook(state, caller, entity, present)
        elif present is None:
            result.id = await _create_entity(state, bundles.BY_KEY[key], entity)
        else:
            result.id = await _update_entity(state, bundles.BY_KEY[key], entity, present)
            if not result.id:
                result.action, result.id = "skipped", getattr(present, "id", name)
                return result
        result.action = "created" if present is None else "updated"
    except errors.DomainError as exc:
        result.action, result.error = "failed", calls.describe(exc)
    return result


async def _import_connection(state: "IntegrationState", caller: Caller, entity: dict[str, Any],
                             present: ApiConnectionRow | None) -> str:
    fields = connections.check(entity)

    def write(session: Session) -> str:
        if present is None:
            row = connection_repo.add(session, ApiConnectionRow(
                tenant_id=caller.tenant_id, created_by=caller.user_id, **fields))
            audit.record(session, caller, "import", "api_connection", row.id, name=row.name)
            return row.id
        row = connection_repo.get(session, caller.tenant_id, present.id, lock=True)
        return connection_repo.change(session, row, fields, caller).id

    return await state.db.write(write)


async def _import_webhook(state: "IntegrationState", caller: Caller, entity: dict[str, Any],
                          present: WebhookRow | None) -> str:
    """Created as the bundle says (a placeholder secret: a new signing secret); an existing one
    overwritten keeps its secret unless the bundle gives one."""
    body = {k: v for k, v in entity.items() if k in bundles.WEBHOOK_FIELDS}
    secret = entity.get("secret")
    if secret == bundles.SECRET_PLACEHOLDER:
        secret = None
    hook = json_format.ParseDict(body, pb.Webhook())
    if secret:
        hook.secret = secret
    if present is None:
        return (await webhook_service.create(state, caller, hook)).id
    url = connections.check_url(hook.url, "url")
    await state.egress.check_url(url)

    def write(session: Session) -> str:
        row = webhook_repo.get(session, caller.tenant_id, present.id, lock=True)
        fields: dict[str, Any] = {"url": url, "events": sorted(set(hook.events)),
                                  "active": hook.active if hook.HasField("active") else True}
        if secret:
            fields.update(secret=secret, secret_hint="****" + secret[-4:])
        for name, value in fields.items():
            setattr(row, name, value)
        webhook_repo.save(session, row)
        audit.record(session, caller, "import", "webhook", row.id, name=row.name)
        return row.id

    return await state.db.write(write)


def _version_body(version: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in version.items() if k not in ("version", "changelog")}


async def _create_entity(state: "IntegrationState", kind: bundles.Kind,
                         entity: dict[str, Any]) -> str:
    """Created in its service; a prompt or template with its later versions and its labels,
    renumbered as the target numbers them."""
    stub = state.peers.stub(kind.stub)
    if kind.key == "budgets":
        return await _set_budget(state, kind, entity)
    if kind.versions in ("snapshot", "policy"):
        return await _create_versioned(state, kind, entity)
    body = {k: v for k, v in entity.items() if k not in ("versions", "labels")}
    versions = entity.get("versions") or []
    if kind.key in _VERSIONED:
        body.update(_version_body(versions[0]))
    message = json_format.ParseDict(body, kind.message())
    created = await calls.call(kind.service, getattr(stub, f"Create{kind.cls}"),
                               kind.request(f"Create{kind.cls}", **{kind.noun: message}))
    if kind.key in _VERSIONED:
        number = {versions[0].get("version", 1): 1}
        version_cls = getattr(kind.module, f"{kind.cls}Version")
        for version in versions[1:]:
            data = {k: v for k, v in version.items() if k != "version"}
            made = await calls.call(kind.service, getattr(stub, f"Create{kind.cls}Version"),
                                    kind.request(f"Create{kind.cls}Version", **{
                                        f"{kind.noun}_id": created.id,
                                        f"{kind.noun}_version": json_format.ParseDict(
                                            data, version_cls())}))
            number[version.get("version")] = made.version
        for label, version in sorted((entity.get("labels") or {}).items()):
            await calls.call(kind.service, getattr(stub, f"Set{kind.cls}Label"),
                             kind.request(f"Set{kind.cls}Label", **{
                                 f"{kind.noun}_id": created.id, "label": label,
                                 "version": number.get(version, version)}))
    return created.id


_EXTRA = ("versions", "version_labels", "schedules")


def _body(kind: bundles.Kind, data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in _EXTRA and k != "version"}


async def _set_budget(state: "IntegrationState", kind: bundles.Kind,
                      entity: dict[str, Any]) -> str:
    """A budget is set whole, by its name (its scope), whether it exists or not."""
    stub = state.peers.stub(kind.stub)
    body = {k: v for k, v in entity.items() if k != "name"}
    budget = json_format.ParseDict(body, kind.message())
    paths = sorted(f for f in bundles.writable(kind.message))
    await calls.call(kind.service, stub.SetBudget, kind.request(
        "SetBudget", budget_name=entity["name"], budget=budget,
        update_mask=field_mask_pb2.FieldMask(paths=paths)))
    return entity["name"]


async def _create_versioned(state: "IntegrationState", kind: bundles.Kind,
                            entity: dict[str, Any]) -> str:
    """An agent, workflow or policy created at its first version, each later version an
    update (numbered as the target numbers them), then its version labels and (a workflow)
    its schedules. Without `versions`: created as the entity is."""
    stub = state.peers.stub(kind.stub)
    current = _body(kind, entity)
    versions = [v for v in entity.get("versions") or [] if isinstance(v, dict)] or [current]

    def full(version: dict[str, Any]) -> dict[str, Any]:
        if kind.versions == "policy":   # a policy version is its text and switch
            return {**current, **_body(kind, version)}
        return _body(kind, version)

    first = json_format.ParseDict(full(versions[0]), kind.message())
    created = await calls.call(kind.service, getattr(stub, f"Create{kind.cls}"),
                               kind.request(f"Create{kind.cls}", **{kind.noun: first}))
    number = {versions[0].get("version", 1): created.version or 1}
    later = versions[1:]
    if versions[-1] is not current and full(versions[-1]) != current:
        later = [*later, current]   # a hand-edited entity past its last version
    for version in later:
        body = full(version)
        updated = await calls.call(kind.service, getattr(stub, f"Update{kind.cls}"),
                                   kind.request(f"Update{kind.cls}", **{
                                       f"{kind.noun}_id": created.id,
                                       kind.noun: json_format.ParseDict(body, kind.message()),
                                       "update_mask": field_mask_pb2.FieldMask(
                                           paths=sorted(bundles.writable(kind.message)
                                                        & set(_mask_fields(kind, body))))}))
        if "version" in version:
            number[version["version"]] = updated.version
    for label, version in sorted((entity.get("version_labels") or {}).items()):
        await calls.call(kind.service, getattr(stub, f"Set{kind.cls}Label"),
                         kind.request(f"Set{kind.cls}Label", **{
                             f"{kind.noun}_id": created.id, "label": label,
                             "version": number.get(version, version)}))
    if kind.key == "workflows":
        await _add_schedules(state, created.id, entity.get("schedules") or [], [])
    return created.id


def _mask_fields(kind: bundles.Kind, body: dict[str, Any]) -> list[str]:
    """What an update to a version sets: every writable field (left out: cleared), but the
    name field of a workflow (its slug) and a policy's shorthand when it has Cedar text."""
    fields = set(bundles.writable(kind.message)) - {"rules", "rate_limit"}
    if kind.key == "workflows":
        fields -= {"slug"}
    if kind.key == "policies":
        fields -= {"effect", "match"} if body.get("cedar") else set()
    return sorted(fields)


async def _add_schedules(state: "IntegrationState", workflow_id: str,
                         schedules: list[dict[str, Any]], present: list[dict[str, Any]]) -> None:
    from agentmesh.workflows.v1 import workflows_pb2
    stub = state.peers.stub(bundles.BY_KEY["workflows"].stub)
    have = {bundles.schedule_key(p) for p in present}
    for schedule in schedules:
        if bundles.schedule_key(schedule) in have:
            continue
        await calls.call("workflows", stub.CreateSchedule, workflows_pb2.CreateScheduleRequest(
            workflow_id=workflow_id,
            schedule=json_format.ParseDict(schedule, workflows_pb2.Schedule())))


async def _update_entity(state: "IntegrationState", kind: bundles.Kind, entity: dict[str, Any],
                         present) -> str:
    """Overwrite: the bundle's fields onto the existing entity ("" when there is nothing to
    write, as for a secret whose value is still the placeholder). An agent, workflow or policy
    gets its entity's fields as one new version (the bundle's history is not replayed onto
    another's); a workflow the bundle's schedules it lacks."""
    stub = state.peers.stub(kind.stub)
    if kind.key == "budgets":
        return await _set_budget(state, kind, entity)
    if kind.key == "decision_webhooks":
        return ""   # nothing to change but by deleting it: kept as it is
    if kind.key == "workflows":
        await _add_schedules(state, present.id, entity.get("schedules") or [],
                             await bundles._schedules(state.peers, present))
    body = {k: v for k, v in entity.items() if k not in ("versions", "labels", *_EXTRA)}
    if kind.key == "secrets" and body.get("value") in (None, "", bundles.SECRET_PLACEHOLDER):
        body.pop("value", None)
        if len(body) <= 1:
            return ""
    if kind.key in _VERSIONED:
        body.update(_version_body((entity.get("versions") or [{}])[-1]))
    message = json_format.ParseDict(body, kind.message())
    paths = sorted(k for k in body if k != kind.name_field)
    if not paths:
        return present.id
    updated = await calls.call(kind.service, getattr(stub, f"Update{kind.cls}"),
                               kind.request(f"Update{kind.cls}", **{
                                   f"{kind.noun}_id": present.id, kind.noun: message,
                                   "update_mask": field_mask_pb2.FieldMask(paths=paths)}))
    return updated.id
