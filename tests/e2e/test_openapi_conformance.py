"""The API keeps the contract it publishes: Schemathesis (every check on) against
`/api/v1/openapi.json` over every built route, through the real gateway, with a bearer token.

Routes of services that are not built yet answer 501 by design; they are excluded here by name,
in NOT_BUILT, and each one leaves that list when its service lands.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mesh import catalog, contract
from tests.conftest import register

# RPCs of built services that still answer UNIMPLEMENTED (501), as `Service.Method`: none now.
NOT_BUILT: list[str] = []
# Where a schema-valid request may still be refused, and why (each one an honest limit of what
# an OpenAPI document can say, not a mismatch): written to schemathesis.toml for the run.
CONFIG = """
# System: names that must be one of the platform's (services of a backup, caches to clear), the
# sections of the configuration document (a Struct), the flag name's pattern on a path parameter
# and a metrics interval that would yield more than 1000 buckets over the default range are
# checked by the service (400 naming the field); OpenAPI cannot state them.
[[operations]]
include-operation-id-regex = "^SystemService_(GetSystemMetricsHistory|CreateBackup|ClearCache|UpdateSystemConfig|UpdateFeatureFlag)$"
checks.positive_data_acceptance.expected-statuses = [
  "2xx", "3xx", 400, 401, 403, 404, 409, 429, "5xx"]

# Rules OpenAPI cannot state, each checked by the service (400 naming the field):
# - a secret's `expires_at` must be in the future (a schema has no "now");
# - a model's `secret_ref` must name one of the tenant's secrets (another resource);
# - a workflow's definition is a graph (step ids unique, `depends_on` naming steps, no cycle)
#   with expressions that must parse;
# - a tool's `input_schema`/`output_schema` must be JSON Schemas and its URL placeholders
#   properties of `input_schema`;
# - a policy's `cedar` must parse as Cedar;
# - a schedule's `cron` must be a cron expression;
# - an imported template's `content` must parse (JSON or YAML) into a template;
# - instantiate's `parameters` are those the stored template declares;
# - a partial update (constraint, model, tool) is checked against the stored resource it
#   changes (a constraint's `rules` against its stored type, a model's provider against its
#   stored `secret_ref`), which the body alone does not show.
[[operations]]
include-operation-id-regex = "^(SecretService_(Create|Update)Secret|ModelService_(Create|Update)Model|WorkflowService_(Create|Update)Workflow|ToolService_(Create|Update)Tool|GovernanceService_(Create|Update|DryRun)Policy|WorkflowService_CreateSchedule|TemplateService_(ImportTemplate|InstantiateTemplate)|ConstraintService_UpdateConstraint)$"
checks.positive_data_acceptance.expected-statuses = [
  "2xx", "3xx", 400, 401, 403, 404, 409, 429, "5xx"]

# Seed 000's execute-workflow: `workflow_type` must name one of the tenant's active workflows
# (another resource); any other is the seed's 400 "Unknown workflow type".
[[operations]]
include-operation-id = "WorkflowService_SubmitWorkflow"
checks.positive_data_acceptance.expected-statuses = [
  "2xx", "3xx", 400, 401, 403, 404, 409, 429, "5xx"]

# CreateApiKey: `scopes` needs one scope; the transcoder drops null items, so `[null]` is a list
# of one item in the document and an empty list in the service (400).
[[operations]]
include-operation-id = "IdentityService_CreateApiKey"
checks.positive_data_acceptance.expected-statuses = [
  "2xx", "3xx", 400, 401, 403, 404, 409, 429, "5xx"]

# Integration: bodies whose validity the document cannot state. A Struct body (`data`,
# `document`, `openapi`, `agent`, `workflow`, template `parameters`) is checked against the
# target resource or bundle; "one of these two fields" (deploy-agent-workflow, external-tool,
# sync-master-data) and known event names, auth types needing `secret_ref`, and a non-negative
# `template_version` (an int32; the kit bounds strings and lists only) are rules of the service.
[[operations]]
include-operation-id-regex = "^IntegrationService_(CreateAgentFromTemplate|DeployAgentWorkflow|IntegrateExternalTool|SyncMasterData|ImportData|ImportFile|CreateWebhook|CreateApiConnection)$"
checks.positive_data_acceptance.expected-statuses = [
  "2xx", "3xx", 400, 401, 403, 404, 409, 429, "5xx"]

# Outbound URLs (an alert rule's `webhook:` channel, a governance decision webhook): a URL whose
# host is or resolves to an internal address is refused when saved (403 EGRESS_DENIED,
# docs/threat-model.md "Outbound requests"); that depends on DNS and the operator's allow-list,
# which a document cannot state. An alert's update is checked as its create, against the
# stored rule it changes (a condition's metric, its window); a silence's `duration` must be 1
# minute to 30 days (a Duration is a string to OpenAPI).
[[operations]]
include-operation-id-regex = "^(ObservabilityService_(CreateAlert|UpdateAlert|SilenceAlert)|GovernanceService_CreateWebhook)$"
checks.positive_data_acceptance.expected-statuses = [
  "2xx", "3xx", 400, 401, 403, 404, 409, 429, "5xx"]

# Lists over a time range (governance decisions, system logs): an `end_time` before `start_time`
# is 400 naming `end_time`, a relation between parameters, which OpenAPI cannot state.
[[operations]]
include-operation-id-regex = "^(GovernanceService_ListDecisions|SystemService_ListSystemLogs)$"
checks.positive_data_acceptance.expected-statuses = [
  "2xx", "3xx", 400, 401, 403, 404, 409, 429, "5xx"]

# Dispatch: the fields `context` needs depend on `intent` (call_reasoning needs a `message`, ...),
# and the dispatched operation checks them (400 naming the field).
[[operations]]
include-operation-id = "GovernanceService_Dispatch"
checks.positive_data_acceptance.expected-statuses = [
  "2xx", "3xx", 400, 401, 403, 404, 409, 429, "5xx"]

# Analytics: an `end_time` before `start_time`, or an `interval` that cuts the range (24 hours by
# default) into more than 1000 buckets, is 400 (analytics.proto says so); both are relations
# between parameters, which OpenAPI cannot state.
[[operations]]
include-operation-id-regex = "^AnalyticsService_(GetAnalyticsSummary|GetCallVolume|GetWorkflowAnalytics|GetProviderLatency|GetErrorStats|GetActiveCallStats)$"
checks.positive_data_acceptance.expected-statuses = [
  "2xx", "3xx", 400, 401, 403, 404, 409, 429, "5xx"]

# Agents: an interaction's message must hold text and takes a `thread_id` or a `call_id`, not
# both; the OpenAI door's messages need a user message with text and known roles, `n` at most
# 1; a thread's agent must be the agent talked to; a call's result is 409 while it runs, a
# cancel 409 once it ended. Relations between fields or with stored resources.
[[operations]]
include-operation-id-regex = "^(AgentService_(StreamInteraction|StartInteraction)|ChatCompletionService_(CreateChatCompletion|StreamChatCompletion)|CallService_(GetCallResult|CancelCall)|ThreadService_CreateThread)$"
checks.positive_data_acceptance.expected-statuses = [
  "2xx", "3xx", 400, 401, 403, 404, 409, 429, "5xx"]
"""
# Bounded so that the run stays well under CI's budget on a 2-core machine.
MAX_EXAMPLES = int(os.environ.get("AGENTMESH_SCHEMATHESIS_MAX_EXAMPLES", "10"))
SEED = os.environ.get("AGENTMESH_SCHEMATHESIS_SEED", "20261125")
PHASES = os.environ.get("AGENTMESH_SCHEMATHESIS_PHASES", "examples,coverage,fuzzing,stateful")
# About 150-170 s on an idle 2-core machine; the bound is for a hang, not for speed.
TIMEOUT_SECONDS = 480


# Services not yet brought to 0 failures, each visibly outside the promise this test keeps until
# its own run is clean. None since the run of 2026-11-25 over every service came out clean.
CONFORMANCE_PENDING: list[str] = []


def _built_services() -> list[str]:
    """The gRPC services (OpenAPI tags) of the built processes (the catalog's), but those whose
    conformance is pending."""
    return sorted({r.service for r in contract.default().rpcs if catalog.is_built(r.backend)
                   and r.backend not in CONFORMANCE_PENDING and not r.internal})


def _summary(output: str) -> str:
    """Schemathesis's closing summary (operations, test cases, failures), and the name of each
    failing operation and check."""
    lines = output.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("API Operations:")), 0)
    failing = [line for line in lines[:start]
               if re.match(r"^_{5,} .+ _{5,}$", line) or re.match(r"^- ST\d+ ", line)]
    return "\n".join([*failing, *lines[start:]])


def test_not_built_list_names_real_rpcs():
    rpcs = {f"{r.service}.{r.name}" for r in contract.default().rpcs}
    assert set(NOT_BUILT) <= rpcs, set(NOT_BUILT) - rpcs


@pytest.mark.timeout(TIMEOUT_SECONDS + 60)
def test_schemathesis_finds_no_failure_on_built_routes(mesh, tmp_path, capsys):
    tenant = register(mesh, "schemathesis")
    st = shutil.which("st", path=str(Path(sys.executable).parent)) or "st"
    excluded = "|".join(re.escape(name.replace(".", "_")) for name in NOT_BUILT)
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    argv = [
        st, "--config-file", str(config), "run", f"{mesh.url}/api/v1/openapi.json", "--url", mesh.url,
        "-H", f"Authorization: Bearer {tenant.token}",
        "--checks", "all",
        *[arg for service in _built_services() for arg in ("--include-tag", service)],
        # operationIds are `Service_Method`, plus a suffix for additional bindings.
        *(("--exclude-operation-id-regex", f"^({excluded})(_|$)") if excluded else ()),
        "--phases", PHASES,
        "--max-examples", str(MAX_EXAMPLES), "--seed", SEED,
        # One worker: Hypothesis's lambda introspection is not thread-safe on CPython 3.11.
        "--workers", "1", "--request-timeout", "10", "--no-color",
    ]
    result = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path,
                            timeout=TIMEOUT_SECONDS,
                            env={**os.environ, "SCHEMATHESIS_TELEMETRY": "false",
                                 "COLUMNS": "120"})
    output = result.stdout + result.stderr
    with capsys.disabled():
        print(f"\n--- schemathesis (excluded, not built yet: {', '.join(NOT_BUILT)}; "
              f"conformance pending: {', '.join(CONFORMANCE_PENDING)})\n"
              f"{_summary(output)}")
    assert result.returncode == 0, output
