"""Tables of the masterdata service. A change here needs a migration:
`agentmesh db revision masterdata -m "..."`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from mesh.runtime.tables import TenantTable, json_field, timestamp_field


def _unique_name(table: str) -> tuple:
    return (sa.UniqueConstraint("tenant_id", "name", name=f"uq_{table}_tenant_name"),)


class SkillRow(TenantTable, table=True):
    __tablename__ = "skills"
    __table_args__ = _unique_name("skills")

    name: str
    description: str = ""
    category: str = ""
    skill_type: str = ""
    parameters: dict[str, Any] = json_field(dict)
    tags: list[str] = json_field(list)
    created_by: str = ""


class ConstraintRow(TenantTable, table=True):
    __tablename__ = "constraints"
    __table_args__ = _unique_name("constraints")

    name: str
    description: str = ""
    constraint_type: str
    rules: dict[str, Any] = json_field(dict)
    enforcement: str = "CONSTRAINT_ENFORCEMENT_BLOCK"
    enabled: bool = True
    created_by: str = ""


class PromptRow(TenantTable, table=True):
    __tablename__ = "prompts"
    __table_args__ = _unique_name("prompts")

    name: str
    description: str = ""
    category: str = ""
    content: str = ""
    variables: list[dict[str, Any]] = json_field(list)
    version: int = 1
    model_hint: str = ""
    tags: list[str] = json_field(list)
    labels: dict[str, int] = json_field(dict)
    created_by: str = ""


class PromptVersionRow(TenantTable, table=True):
    """An immutable version of a prompt's content and variables."""

    __tablename__ = "prompt_versions"
    __audit__ = False  # a record itself, not a change to audit
    __table_args__ = (sa.UniqueConstraint("prompt_id", "version",
                                          name="uq_prompt_versions_prompt_version"),)

    prompt_id: str = Field(index=True)
    version: int
    content: str
    variables: list[dict[str, Any]] = json_field(list)
    changelog: str = ""
    created_by: str = ""


class ModelRow(TenantTable, table=True):
    __tablename__ = "models"
    __table_args__ = _unique_name("models")

    name: str
    description: str = ""
    provider: str
    model_id: str
    model_type: str = "MODEL_TYPE_CHAT"
    context_window: int = 0
    max_output_tokens: int = 0
    default_parameters: dict[str, Any] = json_field(dict)
    pricing: dict[str, Any] = json_field(dict)
    secret_ref: str = ""
    endpoint_url: str = ""
    status: str = "MODEL_STATUS_ACTIVE"
    created_by: str = ""


class SecretRow(TenantTable, table=True):
    """Metadata in clear; the value only as AES-256-GCM ciphertext under its own data key,
    which is stored wrapped by the key-encryption key `key_id` (mesh.masterdata.keys)."""

    __tablename__ = "secrets"
    __table_args__ = _unique_name("secrets")

    name: str
    description: str = ""
    secret_type: str = "SECRET_TYPE_GENERIC"
    value_hint: str = ""
    fingerprint: str = ""
    version: int = 1
    last_rotated_at: datetime | None = timestamp_field()
    expires_at: datetime | None = timestamp_field()
    tags: list[str] = json_field(list)
    created_by: str = ""
    key_id: str = Field(index=True)
    wrapped_key: bytes = Field(sa_type=sa.LargeBinary, nullable=False)
    ciphertext: bytes = Field(sa_type=sa.LargeBinary, nullable=False)


class KeyCheckRow(SQLModel, table=True):
    """One row per key-encryption key id: a constant encrypted under that key, never the key
    itself (mesh.masterdata.keys checks the configured keys against it at start)."""

    __tablename__ = "secret_key_checks"
    __audit__ = False  # a record itself, not a change to audit

    key_id: str = Field(primary_key=True)
    check_value: bytes = Field(sa_type=sa.LargeBinary, nullable=False)
    created_at: datetime | None = timestamp_field(nullable=False)


TABLES = [SkillRow, ConstraintRow, PromptRow, PromptVersionRow, ModelRow, SecretRow, KeyCheckRow]
