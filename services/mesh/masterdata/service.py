"""The masterdata service: skills, constraints, prompts (immutable versions and labels), models
and secrets (envelope-encrypted, mesh.masterdata.keys), on top of the shared runtime.

Every mutation writes an audit event (mesh.runtime.audit) in its own transaction; so does every
read of a secret's value through the internal SecretAccessService.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

import grpc
import sqlalchemy as sa
from sqlmodel import Session, func, or_, select

from agentmesh.common.v1 import common_pb2
from agentmesh.masterdata.v1 import masterdata_pb2 as pb
from agentmesh.masterdata.v1 import masterdata_pb2_grpc as pb_grpc
from mesh.masterdata import keys
from mesh.masterdata.models import (TABLES, ConstraintRow, ModelRow, PromptRow, PromptVersionRow,
                                    SecretRow, SkillRow)
from mesh.masterdata.rules import CONSTRAINT_TYPES, PROVIDERS, rule_problems
from mesh.runtime import audit, errors, labels, placeholders, schemas
from mesh.runtime.context import Caller, require_caller
from mesh.runtime.convert import changes, to_message, values, writable
from mesh.runtime.errors import (DomainError, FailedPrecondition, InvalidArgument, NotFound,
                                 invalid_field)
from mesh.runtime.paging import Page, PageRequest
from mesh.runtime.repository import TenantRepository, like_pattern
from mesh.runtime.service import Runtime, ServiceDefinition
from mesh.runtime.tables import aware, is_uuid, utcnow

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_MAX_SECRET_BYTES = 64 * 1024


class DataLoss(DomainError):
    code = grpc.StatusCode.DATA_LOSS


def _plain(value: Any) -> Any:
    """JSON from a Struct with integral numbers as integers (Struct numbers are all floats)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _check_name(name: str, reserved: tuple[str, ...] = ()) -> None:
    if not name:
        raise invalid_field("name", "is required")
    if not _NAME.match(name) or is_uuid(name):
        raise invalid_field("name", "1-100 letters, digits, '.', '_' or '-', starting with a "
                            "letter or digit, and not a UUID")
    if name in reserved:
        raise invalid_field("name", f"{name!r} is reserved (it is a path of the API)")


def _check_tags(tags: list[str]) -> None:
    for i, tag in enumerate(tags):
        if not tag or len(tag) > 64:
            raise invalid_field(f"tags[{i}]", "1-64 characters")


def _tag_clause(model, tag: str):
    pattern = "%" + json.dumps(tag).replace("\\", "\\\\").replace("%", "\\%") \
        .replace("_", "\\_") + "%"
    return sa.cast(model.tags, sa.Text).like(pattern, escape="\\")


async def _list(db, repo: TenantRepository, caller: Caller, page: PageRequest,
                convert: Callable[[Any], Any], *, filters: dict[str, Any], search: str = "",
                where: tuple = ()) -> dict[str, Any]:
    """One page: the fast path, or the session path when a clause beyond equality is needed."""
    if where:
        result = await db.read(lambda s: repo.list(s, caller.tenant_id, page, filters=filters,
                                                   search=search, where=where))
        return result.fields(convert)
    return (await repo.page(db, caller.tenant_id, page, filters=filters, search=search)).fields()


def _facets(model, column: str, caller: Caller, page: PageRequest,
            known: dict[str, Any] | None = None) -> Callable[[Session], Page]:
    """Counts per value of `column` (every known value, zero included, when `known` is given)."""
    def run(session: Session) -> Page:
        col = getattr(model, column)
        counts = dict(session.exec(select(col, func.count()).where(
            model.tenant_id == caller.tenant_id, col != "").group_by(col)).all())
        names = list(known) if known is not None else sorted(counts)
        items = [(name, counts.get(name, 0)) for name in names]
        return Page(items[page.offset:page.offset + page.page_size], len(items), page.page,
                    page.page_size)
    return run


# ---- skills --------------------------------------------------------------------------------
skills = TenantRepository(SkillRow, noun="skill", message=pb.Skill,
                          search_columns=("name", "description"), order_columns=("name", "category"), quota="resource")
_SKILL = writable(pb.Skill)


def _check_skill(fields: dict[str, Any]) -> None:
    if "name" in fields:
        _check_name(fields["name"], ("categories", "search"))
    problems = schemas.problems(fields.get("parameters") or {}, "parameters")
    if problems:
        raise InvalidArgument("; ".join(f"{f}: {p}" for f, p in problems),
                              field_violations=problems)
    _check_tags(fields.get("tags") or [])


class SkillService(pb_grpc.SkillServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.db = runtime.database

    async def ListSkills(self, request, context):
        caller = require_caller(context)
        where = (_tag_clause(SkillRow, request.tag),) if request.tag else ()
        return pb.ListSkillsResponse(**await _list(
            self.db, skills, caller, PageRequest.of(request), lambda r: to_message(r, pb.Skill),
            filters={"category": request.category, "skill_type": request.skill_type},
            search=request.search, where=where))

    async def CreateSkill(self, request, context):
        caller = require_caller(context)
        fields = values(request.skill, _SKILL)
        _check_skill(fields)
        fields["parameters"] = _plain(fields["parameters"])

        def create(session: Session) -> SkillRow:
            row = skills.add(session, SkillRow(tenant_id=caller.tenant_id,
                                               created_by=caller.user_id, **fields))
            audit.record(session, caller, "create", "skill", row.id, name=row.name)
            return row

        return to_message(await self.db.write(create), pb.Skill)

    async def GetSkill(self, request, context):
        caller = require_caller(context)
        return await skills.fetch(self.db, caller.tenant_id, request.skill_id)

    async def UpdateSkill(self, request, context):
        caller = require_caller(context)
        update = changes(request.skill, _SKILL, list(request.update_mask.paths))
        _check_skill(update)
        if "parameters" in update:
            update["parameters"] = _plain(update["parameters"])

        def apply(session: Session) -> SkillRow:
            row = skills.get(session, caller.tenant_id, request.skill_id, lock=True)
            return skills.change(session, row, update, caller)

        return to_message(await self.db.write(apply), pb.Skill)

    async def DeleteSkill(self, request, context):
        caller = require_caller(context)

        def remove(session: Session) -> str:
            row = skills.get(session, caller.tenant_id, request.skill_id, lock=True)
            return skills.remove(session, row, caller)

        name = await self.db.write(remove)
        return common_pb2.DeleteResponse(success=True, message=f"skill {name!r} deleted")

    async def ListSkillCategories(self, request, context):
        caller = require_caller(context)
        page = PageRequest.of(request)
        result = await self.db.read(_facets(SkillRow, "category", caller, page))
        return pb.ListSkillCategoriesResponse(**result.fields(
            lambda item: pb.FacetCount(name=item[0], count=item[1])))

    async def SearchSkills(self, request, context):
        caller = require_caller(context)
        page = PageRequest.of(request)
        query = request.q.strip().lower()
        if not query:
            raise invalid_field("q", "is required")

        def search(session: Session) -> Page:
            pattern = like_pattern(query)
            clause = or_(*(func.lower(c).like(pattern, escape="\\") for c in (
                SkillRow.name, SkillRow.description, SkillRow.category,
                sa.cast(SkillRow.tags, sa.Text))))
            statement = select(SkillRow).where(SkillRow.tenant_id == caller.tenant_id, clause)
            if request.category:
                statement = statement.where(SkillRow.category == request.category)
            rows = session.exec(statement).all()

            def score(row: SkillRow) -> tuple:
                name = row.name.lower()
                points = (100 if name == query else 50 if name.startswith(query) else
                          30 if query in name else 0)
                points += 20 if query in row.category.lower() else 0
                points += 15 if any(query in t.lower() for t in row.tags) else 0
                points += 10 if query in row.description.lower() else 0
                return (-points, row.name)

            ranked = sorted(rows, key=score)
            return Page(ranked[page.offset:page.offset + page.page_size], len(ranked),
                        page.page, page.page_size)

        result = await self.db.read(search)
        return pb.SearchSkillsResponse(**result.fields(lambda r: to_message(r, pb.Skill)))


# ---- constraints ---------------------------------------------------------------------------
constraints = TenantRepository(ConstraintRow, noun="constraint", message=pb.Constraint,
                               search_columns=("name", "description"),
                               order_columns=("name", "constraint_type"), quota="resource")
_CONSTRAINT = writable(pb.Constraint)


def _check_constraint(state: dict[str, Any]) -> None:
    kind = state.get("constraint_type")
    if not kind or kind == "CONSTRAINT_TYPE_UNSPECIFIED":
        raise invalid_field("constraint_type", f"is required: one of {', '.join(CONSTRAINT_TYPES)}")
    problems = rule_problems(kind, state.get("rules") or {})
    if problems:
        raise InvalidArgument(f"rules do not fit {kind}: " + "; ".join(
            f"{f}: {p}" for f, p in problems), reason="INVALID_CONSTRAINT_RULES",
            field_violations=problems, details={"constraint_type": kind})


class ConstraintService(pb_grpc.ConstraintServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.db = runtime.database

    async def ListConstraints(self, request, context):
        caller = require_caller(context)
        where = (ConstraintRow.enabled == request.enabled,) if request.HasField("enabled") else ()
        filters = {
            "constraint_type": pb.ConstraintType.Name(request.constraint_type)
            if request.constraint_type else None,
            "enforcement": pb.ConstraintEnforcement.Name(request.enforcement)
            if request.enforcement else None}
        return pb.ListConstraintsResponse(**await _list(
            self.db, constraints, caller, PageRequest.of(request),
            lambda r: to_message(r, pb.Constraint), filters=filters, search=request.search,
            where=where))

    async def CreateConstraint(self, request, context):
        caller = require_caller(context)
        fields = values(request.constraint, _CONSTRAINT)
        _check_name(fields["name"], ("types",))
        fields["rules"] = _plain(fields["rules"])
        _check_constraint(fields)
        fields["enabled"] = request.constraint.enabled if request.constraint.HasField("enabled") \
            else True
        if fields["enforcement"] == "CONSTRAINT_ENFORCEMENT_UNSPECIFIED":
            fields["enforcement"] = "CONSTRAINT_ENFORCEMENT_BLOCK"

        def create(session: Session) -> ConstraintRow:
            row = constraints.add(session, ConstraintRow(tenant_id=caller.tenant_id,
                                                         created_by=caller.user_id, **fields))
            audit.record(session, caller, "create", "constraint", row.id, name=row.name)
            return row

        return to_message(await self.db.write(create), pb.Constraint)

    async def GetConstraint(self, request, context):
        caller = require_caller(context)
        return await constraints.fetch(self.db, caller.tenant_id, request.constraint_id)

    async def UpdateConstraint(self, request, context):
        caller = require_caller(context)
        update = changes(request.constraint, _CONSTRAINT, list(request.update_mask.paths))
        if "name" in update:
            _check_name(update["name"], ("types",))
        if "rules" in update:
            update["rules"] = _plain(update["rules"])
        if update.get("enforcement") == "CONSTRAINT_ENFORCEMENT_UNSPECIFIED":
            update["enforcement"] = "CONSTRAINT_ENFORCEMENT_BLOCK"

        def apply(session: Session) -> ConstraintRow:
            row = constraints.get(session, caller.tenant_id, request.constraint_id, lock=True)
            _check_constraint({"constraint_type": update.get("constraint_type", row.constraint_type),
                               "rules": update.get("rules", row.rules)})
            return constraints.change(session, row, update, caller)

        return to_message(await self.db.write(apply), pb.Constraint)

    async def DeleteConstraint(self, request, context):
        caller = require_caller(context)

        def remove(session: Session) -> str:
            row = constraints.get(session, caller.tenant_id, request.constraint_id, lock=True)
            return constraints.remove(session, row, caller)

        name = await self.db.write(remove)
        return common_pb2.DeleteResponse(success=True, message=f"constraint {name!r} deleted")

    async def ListConstraintTypes(self, request, context):
        caller = require_caller(context)
        page = PageRequest.of(request)
        result = await self.db.read(_facets(ConstraintRow, "constraint_type", caller,
                                            page, known=CONSTRAINT_TYPES))

        def facet(item) -> pb.FacetCount:
            description, schema = CONSTRAINT_TYPES[item[0]]
            out = pb.FacetCount(name=item[0], count=item[1], description=description)
            out.rules_schema.update(schema)
            return out

        return pb.ListConstraintTypesResponse(**result.fields(facet))


# ---- prompts -------------------------------------------------------------------------------
def _finish_prompt(message: pb.Prompt) -> pb.Prompt:
    message.served_version = message.version
    message.placeholders[:] = placeholders.check(message.content)
    return message


prompts = TenantRepository(PromptRow, noun="prompt", message=pb.Prompt,
                           search_columns=("name", "description"),
                           order_columns=("name", "category"), finish=_finish_prompt, quota="resource")
prompt_versions = TenantRepository(PromptVersionRow, noun="prompt_version",
                                   message=pb.PromptVersion, name_column=None,
                                   order_columns=("version",), default_order="-version", quota="version")
_PROMPT = writable(pb.Prompt)
_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def _prompt_variables(content: str, declared: list[dict[str, Any]] | None,
                      previous: list[dict[str, Any]] | None = None,
                      field: str = "variables") -> list[dict[str, Any]]:
    """The variables of a version. Declared ones must cover every placeholder; with none
    declared, the previous version's are kept and new placeholders become required variables."""
    if not content:
        raise invalid_field("content", "is required")
    try:
        placeholders.check_count(placeholders.count(content))  # before it is parsed
        used = placeholders.check(content)
    except placeholders.TooManyPlaceholders as exc:
        raise placeholders.refusal(exc, "", "content") from None
    except placeholders.PlaceholderError as exc:
        raise invalid_field("content", str(exc)) from None
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, var in enumerate(declared or []):
        name = var.get("name", "")
        if not _VAR.match(name):
            raise invalid_field(f"{field}[{i}].name", "letters, digits and _, not starting "
                                "with a digit")
        if name in seen:
            raise invalid_field(f"{field}[{i}].name", f"{name!r} is declared twice")
        seen.add(name)
        out.append({"name": name, "description": var.get("description", ""),
                    "required": bool(var.get("required", False)),
                    "default_value": var.get("default_value", "")})
    if declared:
        undeclared = [n for n in used if n not in seen]
        if undeclared:
            raise invalid_field("content", f"placeholder(s) {', '.join(undeclared)} not "
                                f"declared in {field}")
        return out
    kept = {v["name"]: v for v in previous or []}
    return [kept.get(n) or {"name": n, "description": "", "required": True, "default_value": ""}
            for n in used]


def _version_number(session: Session, row: PromptRow, label: str, version: int) -> int:
    if label:
        # With a version too, that version, if the label points at it.
        if label not in row.labels or (version and row.labels[label] != version):
            at = f" at version {version}" if version else ""
            raise NotFound(f"prompt {row.name!r} has no label {label!r}{at}",
                           reason="PROMPT_LABEL_NOT_FOUND", details={"label": label})
        return row.labels[label]
    return version or row.version


def _prompt_version(session: Session, row: PromptRow, number: int) -> PromptVersionRow:
    found = session.exec(select(PromptVersionRow).where(
        PromptVersionRow.tenant_id == row.tenant_id, PromptVersionRow.prompt_id == row.id,
        PromptVersionRow.version == number)).first()
    if found is None:
        raise NotFound(f"prompt {row.name!r} has no version {number}",
                       reason="PROMPT_VERSION_NOT_FOUND", details={"version": number})
    return found


def _version_message(version: PromptVersionRow, row: PromptRow) -> pb.PromptVersion:
    return to_message(version, pb.PromptVersion, labels=sorted(
        k for k, v in row.labels.items() if v == version.version))


def _prompt_message(row: PromptRow, version: PromptVersionRow | None = None) -> pb.Prompt:
    message = to_message(row, pb.Prompt)
    if version is not None:
        message = to_message(row, pb.Prompt, content=version.content,
                             variables=version.variables)
        message.served_version = version.version
        message.placeholders[:] = placeholders.check(version.content)
        return message
    return _finish_prompt(message)


class PromptService(pb_grpc.PromptServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.db = runtime.database

    async def ListPrompts(self, request, context):
        caller = require_caller(context)
        where = (_tag_clause(PromptRow, request.tag),) if request.tag else ()
        return pb.ListPromptsResponse(**await _list(
            self.db, prompts, caller, PageRequest.of(request), _prompt_message,
            filters={"category": request.category}, search=request.search, where=where))

    async def CreatePrompt(self, request, context):
        caller = require_caller(context)
        fields = values(request.prompt, _PROMPT)
        _check_name(fields["name"], ("categories",))
        _check_tags(fields["tags"])
        fields["variables"] = _prompt_variables(fields["content"], fields["variables"])

        def create(session: Session) -> PromptRow:
            row = prompts.add(session, PromptRow(tenant_id=caller.tenant_id,
                                                 created_by=caller.user_id, version=1, **fields))
            prompt_versions.add(session, PromptVersionRow(
                tenant_id=caller.tenant_id, prompt_id=row.id, version=1, content=row.content,
                variables=row.variables, created_by=caller.user_id))
            audit.record(session, caller, "create", "prompt", row.id, name=row.name, version=1)
            return row

        return _prompt_message(await self.db.write(create))

    async def GetPrompt(self, request, context):
        caller = require_caller(context)
        if not request.label and not request.version:
            return await prompts.fetch(self.db, caller.tenant_id, request.prompt_id)

        def get(session: Session) -> pb.Prompt:
            row = prompts.get(session, caller.tenant_id, request.prompt_id)
            number = _version_number(session, row, request.label, request.version)
            return _prompt_message(row, _prompt_version(session, row, number))

        return await self.db.read(get)

    def _new_version(self, session: Session, caller: Caller, row: PromptRow, content: str,
                     variables: list[dict[str, Any]], changelog: str = "") -> PromptVersionRow:
        version = prompt_versions.add(session, PromptVersionRow(
            tenant_id=row.tenant_id, prompt_id=row.id, version=row.version + 1, content=content,
            variables=variables, changelog=changelog, created_by=caller.user_id))
        row.version, row.content, row.variables = version.version, content, variables
        return version

    async def UpdatePrompt(self, request, context):
        caller = require_caller(context)
        update = changes(request.prompt, _PROMPT, list(request.update_mask.paths))
        if "name" in update:
            _check_name(update["name"], ("categories",))
        _check_tags(update.get("tags") or [])

        def apply(session: Session) -> PromptRow:
            row = prompts.get(session, caller.tenant_id, request.prompt_id, lock=True)
            content = update.pop("content", row.content)
            declared = update.pop("variables", None)
            for key, value in update.items():
                setattr(row, key, value)
            if content != row.content or declared is not None:
                variables = _prompt_variables(content, declared, row.variables)
                if content != row.content or variables != row.variables:
                    self._new_version(session, caller, row, content, variables)
            audit.record(session, caller, "update", "prompt", row.id, version=row.version)
            return prompts.save(session, row)

        return _prompt_message(await self.db.write(apply))

    async def DeletePrompt(self, request, context):
        caller = require_caller(context)

        def remove(session: Session) -> str:
            row = prompts.get(session, caller.tenant_id, request.prompt_id, lock=True)
            for version in session.exec(select(PromptVersionRow).where(
                    PromptVersionRow.tenant_id == row.tenant_id,
                    PromptVersionRow.prompt_id == row.id)).all():
                prompt_versions.delete(session, version)
            return prompts.remove(session, row, caller)

        name = await self.db.write(remove)
        return common_pb2.DeleteResponse(success=True, message=f"prompt {name!r} deleted")

    async def ListPromptCategories(self, request, context):
        caller = require_caller(context)
        page = PageRequest.of(request)
        result = await self.db.read(_facets(PromptRow, "category", caller, page))
        return pb.ListPromptCategoriesResponse(**result.fields(
            lambda item: pb.FacetCount(name=item[0], count=item[1])))

    async def ListPromptVersions(self, request, context):
        caller = require_caller(context)
        page = PageRequest.of(request)

        def run(session: Session) -> dict[str, Any]:
            row = prompts.get(session, caller.tenant_id, request.prompt_id)
            result = prompt_versions.list(session, caller.tenant_id, page,
                                          filters={"prompt_id": row.id})
            return result.fields(lambda v: _version_message(v, row))

        return pb.ListPromptVersionsResponse(**await self.db.read(run))

    async def CreatePromptVersion(self, request, context):
        caller = require_caller(context)
        body = request.prompt_version
        declared = [values(v, writable(pb.PromptVariable)) for v in body.variables] or None

        def create(session: Session) -> pb.PromptVersion:
            row = prompts.get(session, caller.tenant_id, request.prompt_id, lock=True)
            variables = _prompt_variables(body.content, declared, row.variables,
                                          field="prompt_version.variables")
            version = self._new_version(session, caller, row, body.content, variables,
                                        body.changelog)
            prompts.save(session, row)
            audit.record(session, caller, "create", "prompt_version", row.id,
                         version=version.version)
            return _version_message(version, row)

        return await self.db.write(create)

    async def GetPromptVersion(self, request, context):
        caller = require_caller(context)

        def get(session: Session) -> pb.PromptVersion:
            row = prompts.get(session, caller.tenant_id, request.prompt_id)
            return _version_message(_prompt_version(session, row, request.version), row)

        return await self.db.read(get)

    async def DeletePromptVersion(self, request, context):
        caller = require_caller(context)

        def remove(session: Session) -> str:
            row = prompts.get(session, caller.tenant_id, request.prompt_id, lock=True)
            version = _prompt_version(session, row, request.version)
            pointing = sorted(k for k, v in row.labels.items() if v == version.version)
            if pointing:
                raise FailedPrecondition(
                    f"version {version.version} of prompt {row.name!r} is labelled "
                    f"{', '.join(pointing)}; move the label(s) first",
                    reason="PROMPT_VERSION_LABELLED", details={"labels": ",".join(pointing)})
            if version.version == row.version:
                raise FailedPrecondition(
                    f"version {version.version} is the current version of prompt {row.name!r}",
                    reason="PROMPT_VERSION_CURRENT", details={"version": version.version})
            prompt_versions.delete(session, version)
            audit.record(session, caller, "delete", "prompt_version", row.id,
                         version=version.version)
            return row.name

        name = await self.db.write(remove)
        return common_pb2.DeleteResponse(
            success=True, message=f"version {request.version} of prompt {name!r} deleted")

    async def SetPromptLabel(self, request, context):
        caller = require_caller(context)
        labels.check(request.label, request.version)

        def apply(session: Session) -> PromptRow:
            row = prompts.get(session, caller.tenant_id, request.prompt_id, lock=True)
            _prompt_version(session, row, request.version)
            previous = labels.point(row, request.label, request.version)
            audit.record(session, caller, "label", "prompt", row.id, label=request.label,
                         version=request.version, previous=previous)
            return prompts.save(session, row)

        return _prompt_message(await self.db.write(apply))

    async def DeletePromptLabel(self, request, context):
        caller = require_caller(context)

        def remove(session: Session) -> str:
            row = prompts.get(session, caller.tenant_id, request.prompt_id, lock=True)
            labels.remove(row, request.label, "prompt")
            prompts.save(session, row)
            audit.record(session, caller, "unlabel", "prompt", row.id, label=request.label)
            return row.name

        name = await self.db.write(remove)
        return common_pb2.DeleteResponse(
            success=True, message=f"label {request.label!r} removed from prompt {name!r}")

    async def RenderPrompt(self, request, context):
        caller = require_caller(context)

        def get(session: Session) -> tuple[PromptRow, PromptVersionRow]:
            row = prompts.get(session, caller.tenant_id, request.prompt_id)
            number = _version_number(session, row, request.label, request.version)
            return row, _prompt_version(session, row, number)

        row, version = await self.db.read(get)
        given = dict(request.variables)
        values_: dict[str, Any] = {}
        missing = []
        declared = {v["name"]: v for v in version.variables}
        for name in placeholders.check(version.content):
            var = declared.get(name, {"required": True, "default_value": ""})
            if name in given:
                values_[name] = given[name]
            elif var.get("default_value"):
                values_[name] = var["default_value"]
            elif var.get("required"):
                missing.append(name)
            else:
                values_[name] = ""
        if missing:
            raise InvalidArgument(
                f"missing value for variable(s) {', '.join(missing)} of prompt {row.name!r}",
                reason="PROMPT_VARIABLES_MISSING", details={"missing": ",".join(missing)},
                field_violations=[(f"variables.{n}", "is required") for n in missing])
        try:
            # Bounded before it is built; long prompts render in the sandbox.
            text = await placeholders.render_async(version.content, values_,
                                                   tenant=caller.tenant_id)
        except placeholders.PlaceholderError as exc:
            raise placeholders.refusal(exc, "PROMPT_RENDER_FAILED", "variables") from None
        return pb.RenderPromptResponse(prompt_id=row.id, version=version.version, content=text)


# ---- models --------------------------------------------------------------------------------
models = TenantRepository(ModelRow, noun="model", message=pb.Model,
                          search_columns=("name", "description", "model_id"),
                          order_columns=("name", "provider"), quota="resource")
_MODEL = writable(pb.Model)


def _check_model(state: dict[str, Any]) -> None:
    provider = PROVIDERS.get(state.get("provider") or "")
    if provider is None:
        raise InvalidArgument(
            f"provider: {'is required' if not state.get('provider') else 'unknown provider ' + repr(state['provider'])}; "
            f"one of {', '.join(PROVIDERS)}", reason="UNKNOWN_PROVIDER",
            field_violations=[("provider", f"one of {', '.join(PROVIDERS)}")])
    if not state.get("model_id"):
        raise invalid_field("model_id", "is required (the provider's name of the model)")
    url = state.get("endpoint_url") or ""
    if url:
        try:
            parsed = urlparse(url)
        except ValueError:  # "http://[": not a URL at all
            raise invalid_field("endpoint_url", "an http or https URL") from None
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise invalid_field("endpoint_url", "an http or https URL")
    elif provider.endpoint_url_required:
        raise invalid_field("endpoint_url", f"is required for provider {provider.name}")
    if provider.secret_required and not state.get("secret_ref"):
        raise invalid_field("secret_ref", f"is required for provider {provider.name}: the name "
                            "of the secret that holds the API key")
    for name in provider.required_parameters:
        if name not in (state.get("default_parameters") or {}):
            raise invalid_field(f"default_parameters.{name}",
                                f"is required for provider {provider.name}")
    for name in ("context_window", "max_output_tokens"):
        if (state.get(name) or 0) < 0:
            raise invalid_field(name, "must not be negative")
    pricing = state.get("pricing") or {}
    for name in ("input_per_1m_tokens", "output_per_1m_tokens"):
        if (pricing.get(name) or 0) < 0:
            raise invalid_field(f"pricing.{name}", "must not be negative")
    currency = pricing.get("currency") or "USD"
    if not re.match(r"^[A-Z]{3}$", currency):
        raise invalid_field("pricing.currency", "an ISO 4217 code such as USD")


def _normalise_model(fields: dict[str, Any]) -> None:
    if fields.get("model_type") == "MODEL_TYPE_UNSPECIFIED":
        fields["model_type"] = "MODEL_TYPE_CHAT"
    if fields.get("status") == "MODEL_STATUS_UNSPECIFIED":
        fields["status"] = "MODEL_STATUS_ACTIVE"
    if "pricing" in fields:
        fields["pricing"] = {"currency": "USD", **(fields["pricing"] or {})}
    if "default_parameters" in fields:
        fields["default_parameters"] = _plain(fields["default_parameters"])


def _find_secret(session: Session, tenant_id: str, key: str) -> SecretRow | None:
    column = SecretRow.id if is_uuid(key) else SecretRow.name
    return session.exec(select(SecretRow).where(SecretRow.tenant_id == tenant_id,
                                                column == key)).first()


def _check_secret_ref(session: Session, tenant_id: str, ref: str) -> None:
    if ref and _find_secret(session, tenant_id, ref) is None:
        raise InvalidArgument(f"secret_ref: the tenant has no secret {ref!r}",
                              reason="SECRET_REF_NOT_FOUND",
                              field_violations=[("secret_ref", "names none of the tenant's secrets")])


class ModelService(pb_grpc.ModelServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.db = runtime.database

    async def ListModels(self, request, context):
        caller = require_caller(context)
        return pb.ListModelsResponse(**await _list(
            self.db, models, caller, PageRequest.of(request), lambda r: to_message(r, pb.Model),
            filters={"provider": request.provider,
                     "model_type": pb.ModelType.Name(request.model_type)
                     if request.model_type else None,
                     "status": pb.ModelStatus.Name(request.status) if request.status else None},
            search=request.search))

    async def CreateModel(self, request, context):
        caller = require_caller(context)
        fields = values(request.model, _MODEL)
        _check_name(fields["name"], ("providers",))
        _normalise_model(fields)
        _check_model(fields)

        def create(session: Session) -> ModelRow:
            _check_secret_ref(session, caller.tenant_id, fields["secret_ref"])
            row = models.add(session, ModelRow(tenant_id=caller.tenant_id,
                                               created_by=caller.user_id, **fields))
            audit.record(session, caller, "create", "model", row.id, name=row.name)
            return row

        return to_message(await self.db.write(create), pb.Model)

    async def GetModel(self, request, context):
        caller = require_caller(context)
        return await models.fetch(self.db, caller.tenant_id, request.model_id)

    async def UpdateModel(self, request, context):
        caller = require_caller(context)
        update = changes(request.model, _MODEL, list(request.update_mask.paths))
        if "name" in update:
            _check_name(update["name"], ("providers",))
        _normalise_model(update)

        def apply(session: Session) -> ModelRow:
            row = models.get(session, caller.tenant_id, request.model_id, lock=True)
            state = {name: getattr(row, name) for name in _MODEL}
            state.update(update)
            _check_model(state)
            if "secret_ref" in update:
                _check_secret_ref(session, caller.tenant_id, update["secret_ref"])
            return models.change(session, row, update, caller)

        return to_message(await self.db.write(apply), pb.Model)

    async def DeleteModel(self, request, context):
        caller = require_caller(context)

        def remove(session: Session) -> str:
            row = models.get(session, caller.tenant_id, request.model_id, lock=True)
            return models.remove(session, row, caller)

        name = await self.db.write(remove)
        return common_pb2.DeleteResponse(success=True, message=f"model {name!r} deleted")

    async def ListModelProviders(self, request, context):
        caller = require_caller(context)
        page = PageRequest.of(request)
        result = await self.db.read(_facets(ModelRow, "provider", caller, page,
                                            known=PROVIDERS))

        def facet(item) -> pb.FacetCount:
            p = PROVIDERS[item[0]]
            return pb.FacetCount(name=p.name, count=item[1], description=p.description,
                                 requirements=pb.ProviderRequirements(
                                     secret_required=p.secret_required,
                                     endpoint_url_required=p.endpoint_url_required,
                                     default_endpoint_url=p.default_endpoint_url,
                                     required_parameters=list(p.required_parameters)))

        return pb.ListModelProvidersResponse(**result.fields(facet))


# ---- secrets -------------------------------------------------------------------------------
secrets = TenantRepository(SecretRow, noun="secret", message=pb.Secret,
                           search_columns=("name", "description"),
                           order_columns=("name", "expires_at", "last_rotated_at"), quota="resource")
_SECRET = writable(pb.Secret)


def keyring_of(runtime: Runtime) -> keys.Keyring:
    """The service's key-encryption keys, loaded and checked against the stored secrets once per
    runtime, when the servicers are built and before the server listens: a missing or wrong key
    stops the service at start with a clear KeyringError, never garbage later."""
    keyring = runtime.__dict__.get("_keyring")
    if keyring is None:
        keyring = keys.Keyring.load(runtime.settings)
        keyring.verify_in(runtime.database, lambda session: set(
            session.exec(select(SecretRow.key_id).distinct()).all()))
        runtime.__dict__["_keyring"] = keyring
    return keyring


def _hint(value: str) -> str:
    return f"…{value[-4:]}" if len(value) >= 12 else "…"


def _check_secret_fields(fields: dict[str, Any], *, creating: bool) -> None:
    if "name" in fields:
        _check_name(fields["name"])
    value = fields.get("value")
    if creating and not value:
        raise invalid_field("value", "is required")
    if value is not None and len(value.encode()) > _MAX_SECRET_BYTES:
        raise invalid_field("value", f"at most {_MAX_SECRET_BYTES} bytes")
    expires = fields.get("expires_at")
    if expires is not None and expires <= utcnow():
        raise invalid_field("expires_at", "must be in the future")
    if fields.get("secret_type") == "SECRET_TYPE_UNSPECIFIED":
        fields["secret_type"] = "SECRET_TYPE_GENERIC"
    _check_tags(fields.get("tags") or [])


def _store_value(keyring: keys.Keyring, row: SecretRow, value: str) -> None:
    sealed = keys.seal(keyring, row.tenant_id, row.id, value)
    row.key_id, row.wrapped_key, row.ciphertext = sealed.key_id, sealed.wrapped_key, \
        sealed.ciphertext
    row.fingerprint, row.value_hint = sealed.fingerprint, _hint(value)


def _refuse_if_referenced(session: Session, row: SecretRow, change: str) -> None:
    users = session.exec(select(ModelRow.name).where(
        ModelRow.tenant_id == row.tenant_id, ModelRow.secret_ref.in_([row.name, row.id]))).all()
    if users:
        raise FailedPrecondition(
            f"secret {row.name!r} is the secret_ref of model(s) {', '.join(users)}; it cannot be "
            f"{change} while they name it", reason="SECRET_IN_USE",
            details={"models": ",".join(users)})


class SecretService(pb_grpc.SecretServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.db = runtime.database
        self.keyring = keyring_of(runtime)

    async def ListSecrets(self, request, context):
        caller = require_caller(context)
        where = (_tag_clause(SecretRow, request.tag),) if request.tag else ()
        return pb.ListSecretsResponse(**await _list(
            self.db, secrets, caller, PageRequest.of(request), lambda r: to_message(r, pb.Secret),
            filters={"secret_type": pb.SecretType.Name(request.secret_type)
                     if request.secret_type else None},
            search=request.search, where=where))

    async def CreateSecret(self, request, context):
        caller = require_caller(context)
        fields = values(request.secret, _SECRET)
        _check_secret_fields(fields, creating=True)
        value = fields.pop("value")

        def create(session: Session) -> SecretRow:
            row = SecretRow(tenant_id=caller.tenant_id, created_by=caller.user_id, version=1,
                            last_rotated_at=utcnow(), **fields)
            _store_value(self.keyring, row, value)
            secrets.add(session, row)
            audit.record(session, caller, "create", "secret", row.id, name=row.name)
            return row

        return to_message(await self.db.write(create), pb.Secret)

    async def GetSecret(self, request, context):
        caller = require_caller(context)
        return await secrets.fetch(self.db, caller.tenant_id, request.secret_id)

    async def UpdateSecret(self, request, context):
        caller = require_caller(context)
        update = changes(request.secret, _SECRET, list(request.update_mask.paths))
        _check_secret_fields(update, creating=False)
        value = update.pop("value", None)

        def apply(session: Session) -> SecretRow:
            row = secrets.get(session, caller.tenant_id, request.secret_id, lock=True)
            if update.get("name", row.name) != row.name:
                _refuse_if_referenced(session, row, "renamed")
            for key, field_value in update.items():
                setattr(row, key, field_value)
            if value:
                _store_value(self.keyring, row, value)
                row.version += 1
                row.last_rotated_at = utcnow()
            audit.record(session, caller, "update", "secret", row.id,
                         fields=sorted([*update, *(["value"] if value else [])]))
            return secrets.save(session, row)

        return to_message(await self.db.write(apply), pb.Secret)

    async def DeleteSecret(self, request, context):
        caller = require_caller(context)

        def remove(session: Session) -> str:
            row = secrets.get(session, caller.tenant_id, request.secret_id, lock=True)
            _refuse_if_referenced(session, row, "deleted")
            return secrets.remove(session, row, caller)

        name = await self.db.write(remove)
        return common_pb2.DeleteResponse(success=True, message=f"secret {name!r} deleted")


class SecretAccessService(pb_grpc.SecretAccessServiceServicer):
    """Internal: the only way a value leaves this service, and every time it is audited."""

    def __init__(self, runtime: Runtime) -> None:
        self.db = runtime.database
        self.keyring = keyring_of(runtime)

    async def RevealSecret(self, request, context):
        caller = require_caller(context)
        if not request.requested_by:
            raise invalid_field("requested_by", "is required: the service asking")

        def reveal(session: Session) -> pb.RevealSecretResponse:
            row = secrets.get(session, caller.tenant_id, request.secret_id)
            if row.expires_at is not None and aware(row.expires_at) <= utcnow():
                raise FailedPrecondition(f"secret {row.name!r} expired", reason="SECRET_EXPIRED",
                                         details={"secret": row.name})
            try:
                value = keys.open_value(self.keyring, row.tenant_id, row.id, row.key_id,
                                        row.wrapped_key, row.ciphertext)
            except keys.KeyringError as exc:
                raise errors.Internal(f"secret {row.name!r} cannot be decrypted here: {exc}",
                                      reason="SECRET_KEY_UNAVAILABLE",
                                      details={"secret": row.name, "key_id": row.key_id}) from None
            except keys.DecryptionFailed:
                raise DataLoss(f"secret {row.name!r} does not decrypt for this tenant and id: "
                               "its ciphertext was altered or copied from another record",
                               reason="SECRET_DECRYPTION_FAILED",
                               details={"secret": row.name}) from None
            audit.record(session, caller, "reveal", "secret", row.id, name=row.name,
                         requested_by=request.requested_by, purpose=request.purpose)
            return pb.RevealSecretResponse(secret_id=row.id, name=row.name, value=value,
                                           version=row.version, secret_type=row.secret_type)

        return await self.db.write(reveal)


DEFINITION = ServiceDefinition(
    "masterdata",
    servicers=[SkillService, ConstraintService, PromptService, ModelService, SecretService,
               SecretAccessService],
    tables=TABLES)
