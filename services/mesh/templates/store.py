"""The templates repositories, the templates' versions (mesh.runtime.versions), and rows as
messages."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format
from sqlmodel import Session

from agentmesh.templates.v1 import templates_pb2 as pb
from mesh.runtime.convert import to_message
from mesh.runtime.repository import TenantRepository
from mesh.runtime.versions import Versions
from mesh.templates.models import TemplateRow, TemplateVersionRow

templates = TenantRepository(TemplateRow, noun="template", search_columns=("name", "description"),
                             order_columns=("name", "kind", "category"), quota="resource")
versions = TenantRepository(TemplateVersionRow, noun="template_version", name_column=None,
                            order_columns=("version",), default_order="-version", quota="version")
# A template's row mirrors its current version's content and parameters.
TEMPLATE_VERSIONS: Versions[TemplateVersionRow] = Versions(
    templates, versions, parent="template_id", noun="template",
    current=("content", "parameters"))


def load(session: Session, tenant_id: str, key: str, number: int = 0,
         label: str = "") -> tuple[TemplateRow, TemplateVersionRow]:
    """The template and the version a read asks for (by label, number, or the current one)."""
    row = templates.get(session, tenant_id, key)
    return row, TEMPLATE_VERSIONS.resolve(session, row, number, label)


def _parameter_messages(parameters: list[dict[str, Any]]) -> list[pb.TemplateParameter]:
    return [json_format.ParseDict(p, pb.TemplateParameter()) for p in parameters]


def template_message(row: TemplateRow) -> pb.Template:
    return to_message(row, pb.Template, parameters=_parameter_messages(row.parameters))


def version_message(version: TemplateVersionRow, row: TemplateRow) -> pb.TemplateVersion:
    return to_message(version, pb.TemplateVersion,
                      parameters=_parameter_messages(version.parameters),
                      labels=TEMPLATE_VERSIONS.labels_at(row, version.version))
