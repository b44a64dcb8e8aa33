"""The templates service: reusable, versioned bodies of agents, workflows and tools with declared
parameters (JSON Schema types, checked with `jsonschema`), rendered safely
(mesh.runtime.placeholders: plain `{{ name }}` placeholders, Jinja2's sandbox), instantiated
through the owning service over gRPC as the caller, exported and imported as YAML or JSON.
The servicer is `api/templates.py`."""

from __future__ import annotations

from mesh.runtime.service import ServiceDefinition
from mesh.templates.api.templates import TemplateService
from mesh.templates.models import TemplateRow, TemplateVersionRow

DEFINITION = ServiceDefinition("templates", servicers=[TemplateService],
                               tables=[TemplateRow, TemplateVersionRow])
