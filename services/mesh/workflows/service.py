"""The workflows service: definitions (versioned), executions on DBOS, live progress, control
(docs/workflows.md). The servicer is `mesh.workflows.api.workflow_service`; the engine, which
owns DBOS, is the service's state (`mesh.workflows.state`).
"""

from __future__ import annotations

from mesh.runtime.service import Runtime, ServiceDefinition
from mesh.workflows.api.workflow_service import WorkflowService
from mesh.workflows.models import (ExecutionRow, ExecutorRow, ScheduleRow, WorkflowRow,
                                   WorkflowVersionRow)


def _engine(runtime: Runtime):
    # Imported here, when the service is built to run: `import dbos` costs about 0.7 s and
    # ~28 MiB, which a process that only lists the catalog or runs other services never pays.
    from mesh.workflows.state import WorkflowsState

    return WorkflowsState(runtime)


DEFINITION = ServiceDefinition("workflows", servicers=[WorkflowService],
                               tables=[WorkflowRow, WorkflowVersionRow, ExecutionRow, ScheduleRow,
                                       ExecutorRow],
                               state=_engine)
