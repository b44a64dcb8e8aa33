"""The masterdata repositories (one per table), the prompts' versions (mesh.runtime.versions),
lists and facets, and rows as messages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlmodel import Session, func, select

from agentmesh.masterdata.v1 import masterdata_pb2 as pb
from mesh.masterdata.models import (ConstraintRow, ModelRow, PromptRow, PromptVersionRow,
                                    SecretRow, SkillRow)
from mesh.runtime import placeholders
from mesh.runtime.convert import to_message
from mesh.runtime.db import Database
from mesh.runtime.paging import Page, PageRequest
from mesh.runtime.repository import TenantRepository
from mesh.runtime.tables import is_uuid
from mesh.runtime.versions import Versions


def finish_prompt(message: pb.Prompt) -> pb.Prompt:
    message.served_version = message.version
    message.placeholders[:] = placeholders.check(message.content)
    return message


skills = TenantRepository(SkillRow, noun="skill", message=pb.Skill,
                          search_columns=("name", "description"),
                          order_columns=("name", "category"), quota="resource")
constraints = TenantRepository(ConstraintRow, noun="constraint", message=pb.Constraint,
                               search_columns=("name", "description"),
                               order_columns=("name", "constraint_type"), quota="resource")
prompts = TenantRepository(PromptRow, noun="prompt", message=pb.Prompt,
                           search_columns=("name", "description"),
                           order_columns=("name", "category"), finish=finish_prompt,
                           quota="resource")
prompt_versions = TenantRepository(PromptVersionRow, noun="prompt_version",
                                   message=pb.PromptVersion, name_column=None,
                                   order_columns=("version",), default_order="-version",
                                   quota="version")
# A prompt's row mirrors its current version's content and variables.
PROMPT_VERSIONS: Versions[PromptVersionRow] = Versions(
    prompts, prompt_versions, parent="prompt_id", noun="prompt",
    current=("content", "variables"))
models = TenantRepository(ModelRow, noun="model", message=pb.Model,
                          search_columns=("name", "description", "model_id"),
                          order_columns=("name", "provider"), quota="resource")
secrets = TenantRepository(SecretRow, noun="secret", message=pb.Secret,
                           search_columns=("name", "description"),
                           order_columns=("name", "expires_at", "last_rotated_at"),
                           quota="resource")


# ---- lists ----------------------------------------------------------------------------------
async def list_fields(db: Database, repo: TenantRepository, tenant_id: str, page: PageRequest,
                      convert: Callable[[Any], Any], *, filters: dict[str, Any],
                      search: str = "", where: tuple = ()) -> dict[str, Any]:
    """One page as a List*Response's fields: the fast path, or the session path when a clause
    beyond equality is needed."""
    if where:
        result = await db.read(lambda s: repo.list(s, tenant_id, page, filters=filters,
                                                   search=search, where=where))
        return result.fields(convert)
    return (await repo.page(db, tenant_id, page, filters=filters, search=search)).fields()


def facets(model, column: str, tenant_id: str, page: PageRequest,
           known: dict[str, Any] | None = None) -> Callable[[Session], Page]:
    """Counts per value of `column` (every known value, zero included, when `known` is given)."""
    def run(session: Session) -> Page:
        col = getattr(model, column)
        counts = dict(session.exec(select(col, func.count()).where(
            model.tenant_id == tenant_id, col != "").group_by(col)).all())
        names = list(known) if known is not None else sorted(counts)
        items = [(name, counts.get(name, 0)) for name in names]
        return Page(items[page.offset:page.offset + page.page_size], len(items), page.page,
                    page.page_size)
    return run


# ---- prompts as messages --------------------------------------------------------------------
def prompt_message(row: PromptRow, version: PromptVersionRow | None = None) -> pb.Prompt:
    """The prompt; with `version`, served at that version (its content and variables)."""
    if version is None:
        return finish_prompt(to_message(row, pb.Prompt))
    message = to_message(row, pb.Prompt, content=version.content, variables=version.variables)
    message.served_version = version.version
    message.placeholders[:] = placeholders.check(version.content)
    return message


def prompt_version_message(version: PromptVersionRow, row: PromptRow) -> pb.PromptVersion:
    return to_message(version, pb.PromptVersion,
                      labels=PROMPT_VERSIONS.labels_at(row, version.version))


# ---- secrets and who names them -------------------------------------------------------------
def find_secret(session: Session, tenant_id: str, key: str) -> SecretRow | None:
    column = SecretRow.id if is_uuid(key) else SecretRow.name
    return session.exec(select(SecretRow).where(SecretRow.tenant_id == tenant_id,
                                                column == key)).first()


def models_naming(session: Session, secret: SecretRow) -> list[str]:
    """The names of the models whose `secret_ref` is this secret (by name or id)."""
    return list(session.exec(select(ModelRow.name).where(
        ModelRow.tenant_id == secret.tenant_id,
        ModelRow.secret_ref.in_([secret.name, secret.id]))).all())
