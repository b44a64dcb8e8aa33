"""The contract holds every documented route exactly once, with its scope, and the OpenAPI
document lists them (tests/test_generated.py: gen/ in step with protos/, buf)."""

from __future__ import annotations

import json

import pytest
from openapi_spec_validator import validate

from mesh import contract
from mesh.build.repo import OPENAPI_JSON

# The seeds' routes: seed 001 (every section), seed 003, seed 000, seed 002.
SEED_ROUTES = """
POST /api/v1/auth/login
POST /api/v1/auth/register
POST /api/v1/auth/refresh
POST /api/v1/auth/logout
GET /api/v1/auth/me
GET /api/v1/agents
POST /api/v1/agents
GET /api/v1/agents/{agent_id}
PUT /api/v1/agents/{agent_id}
DELETE /api/v1/agents/{agent_id}
POST /api/v1/agents/{agent_id}/deploy
POST /api/v1/agents/{agent_id}/undeploy
GET /api/v1/agents/{agent_id}/stats
POST /api/v1/agents/{agent_id}/interact
POST /api/v1/agents/{agent_id}/activate
POST /api/v1/agents/{agent_id}/deactivate
GET /api/v1/workflows
POST /api/v1/workflows
GET /api/v1/workflows/{workflow_id}
PUT /api/v1/workflows/{workflow_id}
DELETE /api/v1/workflows/{workflow_id}
POST /api/v1/workflows/{workflow_id}/execute
GET /api/v1/workflows/{workflow_id}/executions
GET /api/v1/workflows/{workflow_id}/stats
POST /api/v1/workflows/{workflow_id}/template
POST /api/v1/workflows/{workflow_id}/activate
POST /api/v1/workflows/{workflow_id}/deactivate
GET /api/v1/tools
POST /api/v1/tools
GET /api/v1/tools/{tool_id}
PUT /api/v1/tools/{tool_id}
DELETE /api/v1/tools/{tool_id}
POST /api/v1/tools/{tool_id}/execute
POST /api/v1/tools/{tool_id}/test
POST /api/v1/tools/{tool_id}/validate
POST /api/v1/tools/{tool_id}/deploy
GET /api/v1/tools/{tool_id}/stats
GET /api/v1/tools/categories
GET /api/v1/tools/types
GET /api/v1/master-data/skills
POST /api/v1/master-data/skills
GET /api/v1/master-data/skills/{skill_id}
PUT /api/v1/master-data/skills/{skill_id}
DELETE /api/v1/master-data/skills/{skill_id}
GET /api/v1/master-data/skills/categories
GET /api/v1/master-data/skills/search
GET /api/v1/master-data/constraints
POST /api/v1/master-data/constraints
GET /api/v1/master-data/constraints/{constraint_id}
PUT /api/v1/master-data/constraints/{constraint_id}
DELETE /api/v1/master-data/constraints/{constraint_id}
GET /api/v1/master-data/constraints/types
GET /api/v1/master-data/prompts
POST /api/v1/master-data/prompts
GET /api/v1/master-data/prompts/{prompt_id}
PUT /api/v1/master-data/prompts/{prompt_id}
DELETE /api/v1/master-data/prompts/{prompt_id}
GET /api/v1/master-data/prompts/categories
GET /api/v1/master-data/models
POST /api/v1/master-data/models
GET /api/v1/master-data/models/{model_id}
PUT /api/v1/master-data/models/{model_id}
DELETE /api/v1/master-data/models/{model_id}
GET /api/v1/master-data/models/providers
GET /api/v1/master-data/secrets
POST /api/v1/master-data/secrets
GET /api/v1/master-data/secrets/{secret_id}
PUT /api/v1/master-data/secrets/{secret_id}
DELETE /api/v1/master-data/secrets/{secret_id}
GET /api/v1/templates
POST /api/v1/templates
GET /api/v1/templates/{template_id}
PUT /api/v1/templates/{template_id}
DELETE /api/v1/templates/{template_id}
POST /api/v1/templates/{template_id}/instantiate
GET /api/v1/templates/{template_id}/preview
GET /api/v1/templates/{template_id}/versions
POST /api/v1/templates/{template_id}/versions
POST /api/v1/templates/import
GET /api/v1/templates/{template_id}/export
GET /api/v1/observability/events
POST /api/v1/observability/events
GET /api/v1/observability/metrics
GET /api/v1/observability/traces
GET /api/v1/observability/logs
GET /api/v1/observability/health
GET /api/v1/observability/alerts
POST /api/v1/observability/alerts
GET /api/v1/system/status
GET /api/v1/system/health
GET /api/v1/system/info
GET /api/v1/system/logs
GET /api/v1/system/config
PUT /api/v1/system/config
GET /api/v1/system/metrics
GET /api/v1/system/metrics/history
POST /api/v1/system/restart/{service}
POST /api/v1/system/cache/clear
GET /api/v1/system/stats
GET /api/v1/system/alerts
POST /api/v1/system/backup
POST /api/v1/integration/agent-from-template
POST /api/v1/integration/deploy-agent-workflow
POST /api/v1/integration/external-tool
POST /api/v1/integration/sync-master-data
POST /api/v1/integration/export
POST /api/v1/integration/import
POST /api/v1/integration/import-file
GET /api/v1/integration/status
POST /api/v1/integration/webhook
GET /api/v1/integration/webhooks
POST /api/v1/integration/api-connection
GET /api/v1/integration/api-connections
POST /api/v1/integration/batch/agents
POST /api/v1/integration/batch/workflows
GET /api/v1/calls
GET /api/v1/calls/{call_id}
GET /api/v1/calls/{call_id}/transcript
GET /api/v1/calls/{call_id}/metrics
GET /api/v1/calls/active
GET /api/v1/analytics/summary
GET /api/v1/analytics/call-volume
GET /api/v1/analytics/workflow-stats
GET /api/v1/analytics/provider-latency
GET /api/v1/analytics/errors
GET /api/v1/analytics/active-calls
POST /api/v1/execute-workflow
GET /api/v1/workflow-status/{id}
GET /api/v1/workflow-types
POST /api/v1/dispatch
"""
ROUTES = [tuple(line.split()) for line in SEED_ROUTES.strip().splitlines()]
_ALIASES = {"{id}": "{execution_id}"}  # seed 000 names the workflow-status variable `id`


def _concrete(template: str) -> str:
    """A request path for a template: every variable becomes a sample id."""
    return "/".join("some-id-123" if part.startswith("{") else part
                    for part in template.split("/"))


@pytest.fixture(scope="module")
def the_contract() -> contract.Contract:
    return contract.default()


@pytest.mark.parametrize("method,template", ROUTES, ids=[f"{m} {t}" for m, t in ROUTES])
def test_documented_route_maps_to_exactly_one_rpc(the_contract, method, template):
    declared = template
    for alias, real in _ALIASES.items():
        declared = declared.replace(alias, real)
    owners = [rpc for rpc in the_contract.rpcs for b in rpc.bindings
              if b.method == method and b.template == declared]
    assert len(owners) == 1, f"{method} {declared} is declared by {len(owners)} RPCs"
    # And a real request to it reaches that RPC: literal segments are not shadowed by {id}.
    reached = the_contract.resolve(method, _concrete(declared))
    assert reached == owners, f"{method} {_concrete(declared)} reaches {reached}"


@pytest.mark.parametrize("path,rpc_name", [
    ("/api/v1/tools/categories", "ListToolCategories"),
    ("/api/v1/tools/types", "ListToolTypes"),
    ("/api/v1/master-data/skills/search", "SearchSkills"),
    ("/api/v1/master-data/skills/categories", "ListSkillCategories"),
    ("/api/v1/calls/active", "ListActiveCalls"),
    ("/api/v1/tools/some-tool", "GetTool"),
])
def test_literal_paths_win_over_id_templates(the_contract, path, rpc_name):
    assert [r.name for r in the_contract.resolve("GET", path)] == [rpc_name]


def test_no_two_rpcs_share_a_route(the_contract):
    seen = {}
    for rpc in the_contract.rpcs:
        for binding in rpc.bindings:
            key = (binding.method, binding.template)
            assert key not in seen, f"{key} on {seen.get(key)} and {rpc.grpc_path}"
            seen[key] = rpc.grpc_path


def test_every_rpc_declares_a_scope_or_is_public(the_contract):
    for rpc in the_contract.rpcs:
        # Internal RPCs (service to service) have no REST binding; every other RPC has one.
        assert bool(rpc.bindings) != rpc.internal, f"{rpc.grpc_path}: binding vs internal"
        if rpc.scope:
            area, _, action = rpc.scope.partition(":")
            assert area and action in {"read", "write", "delete", "execute"}, rpc.scope
    public = {r.name for r in the_contract.rpcs if r.public}
    assert {"Login", "Register", "Refresh", "GetJwks", "CheckHealth",
            "GetOpenApiDocument"} <= public
    assert "GetAgent" not in public


def test_descriptor_set_carries_rpc_error_details(the_contract):
    names = {f.name for f in the_contract.files.file}
    assert {"google/rpc/status.proto", "google/rpc/error_details.proto"} <= names


def test_openapi_document_validates_and_lists_every_documented_route():
    document = json.loads(OPENAPI_JSON.read_text())
    validate(document)
    for method, template in ROUTES:
        path = template.replace("{id}", "{execution_id}")
        assert method.lower() in document["paths"].get(path, {}), f"{method} {path} missing"
    login = document["paths"]["/api/v1/auth/login"]["post"]
    assert login["security"] == []
    get_agent = document["paths"]["/api/v1/agents/{agent_id}"]["get"]
    assert get_agent["x-required-scope"] == "agents:read"
    envelope = document["components"]["schemas"]["agentmesh.common.v1.ErrorEnvelope"]
    assert set(envelope["properties"]) == {"error", "message", "details", "correlation_id",
                                           "request_id", "timestamp"}
    assert "request_id" in envelope["required"]
    # Request bodies are closed: an unknown field is refused (the gateway's body check).
    assert document["components"]["schemas"]["agentmesh.agents.v1.Agent"][
        "additionalProperties"] is False
    assert "UNKNOWN_FIELD" in document["components"]["responses"]["Error400"]["description"]
    assert get_agent["responses"]["404"]["$ref"].endswith("Error404")
