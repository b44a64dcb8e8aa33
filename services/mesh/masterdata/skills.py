"""Skills: what a skill's fields must be, and the ranked search."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, func, or_, select

from mesh.masterdata.checks import check_name, check_tags
from mesh.masterdata.models import SkillRow
from mesh.runtime import schemas
from mesh.runtime.errors import InvalidArgument
from mesh.runtime.paging import Page, PageRequest
from mesh.runtime.repository import like_pattern

# Paths of the API beside /skills/{id}.
RESERVED = ("categories", "search")


def check_skill(fields: dict[str, Any]) -> None:
    if "name" in fields:
        check_name(fields["name"], RESERVED)
    problems = schemas.problems(fields.get("parameters") or {}, "parameters")
    if problems:
        raise InvalidArgument("; ".join(f"{f}: {p}" for f, p in problems),
                              field_violations=problems)
    check_tags(fields.get("tags") or [])


def _score(row: SkillRow, query: str) -> tuple:
    """Best first: the name (exact, prefix, part), then category, tags, description."""
    name = row.name.lower()
    points = (100 if name == query else 50 if name.startswith(query) else
              30 if query in name else 0)
    points += 20 if query in row.category.lower() else 0
    points += 15 if any(query in t.lower() for t in row.tags) else 0
    points += 10 if query in row.description.lower() else 0
    return (-points, row.name)


def search(session: Session, tenant_id: str, query: str, category: str,
           page: PageRequest) -> Page[SkillRow]:
    """The tenant's skills matching `query` (lower case) in name, description, category or
    tags, ranked (`_score`), one page of them."""
    pattern = like_pattern(query)
    clause = or_(*(func.lower(c).like(pattern, escape="\\") for c in (
        SkillRow.name, SkillRow.description, SkillRow.category,
        sa.cast(SkillRow.tags, sa.Text))))
    statement = select(SkillRow).where(SkillRow.tenant_id == tenant_id, clause)
    if category:
        statement = statement.where(SkillRow.category == category)
    ranked = sorted(session.exec(statement).all(), key=lambda row: _score(row, query))
    return Page(ranked[page.offset:page.offset + page.page_size], len(ranked), page.page,
                page.page_size)
