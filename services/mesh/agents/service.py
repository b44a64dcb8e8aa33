"""The agents service: AgentService and CallService (mesh/agents/api/), the agents' domain rules
on top of the shared runtime."""

from __future__ import annotations

from mesh.agents.api.agents import AgentService
from mesh.agents.api.calls import CallService
from mesh.agents.api.chat import ChatCompletionService
from mesh.agents.api.threads import ThreadService
from mesh.agents.models import AgentRow, AgentVersionRow, CallRow, ThreadMessageRow, ThreadRow
from mesh.agents.runs import Runs
from mesh.runtime.service import ServiceDefinition

DEFINITION = ServiceDefinition("agents", servicers=[AgentService, CallService, ThreadService,
                                                    ChatCompletionService],
                               tables=[AgentRow, AgentVersionRow, CallRow, ThreadRow,
                                       ThreadMessageRow],
                               state=Runs)
