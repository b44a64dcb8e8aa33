"""The gateway config is generated from the contract and from the settings the services read."""

from __future__ import annotations

import json
import re

from mesh import contract
from mesh.gateway.config import GatewayOptions, build, lua_source
from mesh.runtime.context import IDENTITY_HEADERS
from mesh.runtime.errors import ERROR_TRAILER
from mesh.runtime.settings import Settings


def _backends() -> dict[str, tuple[str, int]]:
    return {name: ("127.0.0.1", 9000 + i) for i, name in enumerate(contract.default().backends)}


def _filter(config: dict, name: str) -> dict:
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    return next(f for f in hcm["typed_config"]["http_filters"] if f["name"] == name)["typed_config"]


def test_jwt_issuer_and_audience_come_from_settings():
    settings = Settings(jwt_issuer="https://issuer.example", jwt_audience="aud-x")
    options = GatewayOptions.from_settings(settings, backends=_backends(), listen_port=18080)
    provider = _filter(build(contract.default(), options),
                       "envoy.filters.http.jwt_authn")["providers"]["identity"]
    assert provider["issuer"] == "https://issuer.example"
    assert provider["audiences"] == ["aud-x"]
    assert options.listen_port == 18080


def test_defaults_are_the_settings_defaults():
    options = GatewayOptions(backends=_backends())
    assert (options.jwt_issuer, options.jwt_audience) == (Settings().jwt_issuer,
                                                          Settings().jwt_audience)


def test_lua_gets_the_shared_names_and_the_routes_filled_in():
    source = lua_source(contract.default())
    assert not re.search(r"__AGENTMESH_[A-Z_]+__", source)
    assert json.dumps(ERROR_TRAILER) in source
    assert all(json.dumps(header) in source for header in IDENTITY_HEADERS)
    assert '"^/api/v1/agents/[^/]+$", {"DELETE", "GET", "PUT"}' in source


def test_the_descriptor_set_is_the_installed_package_resource():
    config = build(contract.default(), GatewayOptions(backends=_backends()))
    path = _filter(config, "envoy.filters.http.grpc_json_transcoder")["proto_descriptor"]
    assert path.endswith("agentmesh/descriptor.binpb")


def test_transcoder_reads_plus_as_a_space_and_envelopes_carry_request_id():
    config = build(contract.default(), GatewayOptions(backends=_backends()))
    assert _filter(config, "envoy.filters.http.grpc_json_transcoder")[
        "query_param_unescape_plus"] is True
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
        "typed_config"]
    for mapper in hcm["local_reply_config"]["mappers"]:
        body = mapper["body_format_override"]["json_format"]
        assert body["request_id"] == body["correlation_id"] == "%REQ(X-CORRELATION-ID)%"
    cors = hcm["route_config"]["virtual_hosts"][0]["typed_per_filter_config"][
        "envoy.filters.http.cors"]
    assert "x-request-id" in cors["expose_headers"]
    assert "last-event-id" in cors["allow_headers"]


def test_body_tables_know_every_field_of_a_route_body_by_both_names():
    from mesh.gateway.bodies import FREE_OBJECT, MESSAGE, REPEATED, SCALAR, BodySchemas

    schemas = BodySchemas(contract.default())
    create = contract.default().rpc("/agentmesh.agents.v1.AgentService/CreateAgent")
    code, field_name = schemas.route_body(create, create.bindings[0])
    assert (code % 8, field_name) == (MESSAGE, "agent")
    agent = schemas.types[code // 16 - 1]
    assert "model" in agent and agent["system_prompt"] == agent["systemPrompt"]
    assert agent["system_prompt"] % 8 == SCALAR
    assert agent["tools"] % 16 == REPEATED + SCALAR
    assert agent["config"] % 8 == FREE_OBJECT and agent["labels"] % 8 == FREE_OBJECT
    assert "modle" not in agent
    upload = contract.default().rpc("/agentmesh.integration.v1.IntegrationService/ImportFile")
    assert schemas.route_body(upload, upload.bindings[0]) is None  # raw bytes, not JSON
    source = lua_source(contract.default())
    assert '["systemPrompt"] = ' in source and "AGENT_STATUS_DRAFT, AGENT_STATUS_ACTIVE" in source
