"""The agents service: AgentService and CallService (mesh/agents/api/), the agents' domain rules
on top of the shared runtime."""

from __future__ import annotations

from mesh.agents.api.agents import AgentService
from mesh.agents.api.calls import CallService
from mesh.agents.models import AgentRow, CallRow
from mesh.runtime.service import ServiceDefinition

DEFINITION = ServiceDefinition("agents", servicers=[AgentService, CallService],
                               tables=[AgentRow, CallRow])
