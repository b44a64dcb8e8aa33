"""The masterdata service: skills, constraints, prompts (immutable versions and labels), models
and secrets (envelope-encrypted, mesh.masterdata.keys), one servicer module per proto service
in `api/`. Every mutation writes an audit event (mesh.runtime.audit) in its own transaction;
so does every read of a secret's value through the internal SecretAccessService."""

from __future__ import annotations

from mesh.masterdata.api.constraints import ConstraintService
from mesh.masterdata.api.models import ModelService
from mesh.masterdata.api.prompts import PromptService
from mesh.masterdata.api.secret_access import SecretAccessService
from mesh.masterdata.api.secrets import SecretService
from mesh.masterdata.api.skills import SkillService
from mesh.masterdata.models import TABLES
from mesh.masterdata.state import MasterdataState
from mesh.runtime.service import ServiceDefinition

DEFINITION = ServiceDefinition(
    "masterdata",
    servicers=[SkillService, ConstraintService, PromptService, ModelService, SecretService,
               SecretAccessService],
    tables=TABLES, state=MasterdataState)
