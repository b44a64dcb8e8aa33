"""The gateway config is generated from the contract and from the settings the services read."""

from __future__ import annotations

import json
import re

from mesh import contract
from mesh.gateway.config import GatewayOptions, build
from mesh.gateway.lua import lua_source
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


def test_span_exports_carry_the_internal_token_only_when_tracing():
    """Envoy's tracer presents the platform's internal token to the span receiver (which refuses
    exports without it); without tracing the token appears nowhere in the config."""
    from mesh.runtime.internal import HEADER

    traced = build(contract.default(), GatewayOptions(
        backends=_backends(), trace_cluster="observability", trace_token="t0ken"))
    hcm = traced["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    service = hcm["typed_config"]["tracing"]["provider"]["typed_config"]["grpc_service"]
    assert service["initial_metadata"] == [{"key": HEADER, "value": "t0ken"}]
    assert "t0ken" not in repr(GatewayOptions(backends=_backends(), trace_token="t0ken"))
    untraced = build(contract.default(), GatewayOptions(backends=_backends(), trace_token="t0ken"))
    assert "t0ken" not in json.dumps(untraced)


def test_a_named_collector_gets_the_gateways_spans_with_its_headers_and_never_the_token():
    """With OTEL_EXPORTER_OTLP_ENDPOINT naming a collector, Envoy's tracer exports there (an
    https URL over TLS, verified), with OTEL_EXPORTER_OTLP_HEADERS and without the internal
    token; its service.name is agentmesh-gateway."""
    config = build(contract.default(), GatewayOptions(
        backends=_backends(), trace_cluster="observability", trace_token="t0ken",
        trace_collector="https://collector.example:4317",
        trace_collector_headers={"authorization": "Bearer k"}))
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    tracer = hcm["typed_config"]["tracing"]["provider"]["typed_config"]
    assert tracer["service_name"] == "agentmesh-gateway"
    assert tracer["grpc_service"]["envoy_grpc"]["cluster_name"] == "otlp_collector"
    assert tracer["grpc_service"]["initial_metadata"] == [{"key": "authorization",
                                                           "value": "Bearer k"}]
    assert "t0ken" not in json.dumps(config)
    cluster = next(c for c in config["static_resources"]["clusters"]
                   if c["name"] == "otlp_collector")
    address = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert address["address"]["socket_address"] == {"address": "collector.example",
                                                    "port_value": 4317}
    tls = cluster["transport_socket"]["typed_config"]
    assert tls["sni"] == "collector.example"
    plain = build(contract.default(), GatewayOptions(
        backends=_backends(), trace_collector="http://127.0.0.1:4317"))
    cluster = next(c for c in plain["static_resources"]["clusters"]
                   if c["name"] == "otlp_collector")
    assert "transport_socket" not in cluster


def test_the_public_metrics_route_needs_platform_read_and_prometheus_has_its_own_listener():
    """`/metrics` on the public listener is an operator's route (platform:read); the metrics
    listener serves Envoy's Prometheus stats and nothing else."""
    config = build(contract.default(), GatewayOptions(backends=_backends(),
                                                      admin_socket="/run/x/admin.sock",
                                                      metrics_port=9102))
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    routes = hcm["typed_config"]["route_config"]["virtual_hosts"][0]["routes"]
    scrape = next(r for r in routes
                  if r["name"].endswith("ObservabilityService/GetPrometheusMetrics"))
    assert scrape["metadata"]["filter_metadata"]["agentmesh"]["scope"] == "platform:read"
    metrics = next(l for l in config["static_resources"]["listeners"] if l["name"] == "metrics")
    assert metrics["address"]["socket_address"]["port_value"] == 9102
    vhost = metrics["filter_chains"][0]["filters"][0]["typed_config"]["route_config"][
        "virtual_hosts"][0]
    served = [r["match"] for r in vhost["routes"] if "route" in r]
    assert served == [{"path": "/stats/prometheus",
                       "headers": [{"name": ":method", "string_match": {"exact": "GET"}}]}]


def test_the_admin_interface_is_a_private_unix_socket_and_metrics_reach_it_through_it():
    options = GatewayOptions(backends=_backends(), admin_socket="/run/x/admin.sock",
                             metrics_port=9102)
    config = build(contract.default(), options)
    assert config["admin"] == {"address": {"pipe": {"path": "/run/x/admin.sock",
                                                    "mode": 0o600}}}
    admin = next(c for c in config["static_resources"]["clusters"]
                 if c["name"] == "gateway_admin")
    endpoint = admin["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"] == {"pipe": {"path": "/run/x/admin.sock"}}
    # No admin interface at all without a socket, and never a TCP one.
    assert "admin" not in build(contract.default(), GatewayOptions(backends=_backends()))
    assert "socket_address" not in json.dumps(config["admin"])


def test_the_metrics_port_serves_envoy_stats_from_the_admin_socket_and_nothing_else(tmp_path):
    """A real Envoy: the metrics listener answers GET /stats/prometheus through the admin
    socket; the admin interface's other routes (POST /quitquitquit) are 404 there."""
    import socket
    import subprocess
    import time

    import httpx2

    from mesh.supervisor import envoy_binary, free_port

    port, metrics = free_port(), free_port()
    options = GatewayOptions(backends=_backends(), listen_port=port, metrics_port=metrics,
                             admin_socket=str(tmp_path / "admin.sock"))
    (tmp_path / "envoy.json").write_text(json.dumps(build(contract.default(), options)))
    envoy = subprocess.Popen([envoy_binary(), "-c", str(tmp_path / "envoy.json"),
                              "--disable-hot-restart", "--log-level", "error"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url, stats = f"http://127.0.0.1:{metrics}", None
        for _ in range(100):
            try:
                stats = httpx2.get(f"{url}/stats/prometheus")
                break
            except httpx2.TransportError:
                time.sleep(0.1)
        assert stats is not None and stats.status_code == 200, "no metrics listener"
        assert "envoy_server_live" in stats.text
        assert httpx2.post(f"{url}/quitquitquit").status_code == 404
        assert httpx2.get(f"{url}/server_info").status_code == 404
        assert envoy.poll() is None  # still running
        with socket.socket(socket.AF_UNIX) as admin:  # the socket itself answers
            admin.connect(str(tmp_path / "admin.sock"))
    finally:
        envoy.terminate()
        envoy.wait(10)


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


def test_websocket_routes_and_the_rate_classes_come_from_their_one_declaration():
    """The gateway routes each socket of mesh.runtime.sockets with its scope (the live service
    matches the same table), and counts the contract's credential routes per client IP and its
    unlimited ones (the health probe) against no bucket."""
    from mesh.gateway.ratelimits import rate_class_metadata, rate_limit_per_route
    from mesh.runtime import sockets

    config = build(contract.default(), GatewayOptions(backends=_backends(),
                                                      live_websocket=("127.0.0.1", 8081)))
    routes = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
        "typed_config"]["route_config"]["virtual_hosts"][0]["routes"]
    websockets = [(r["match"]["safe_regex"]["regex"],
                   r["metadata"]["filter_metadata"]["agentmesh"]["scope"])
                  for r in routes if r["name"].startswith("websocket ")]
    assert websockets == [(s.regex, s.scope) for s in sockets.SOCKETS]
    credentials = {r.name for r in contract.default().rpcs if rate_class_metadata(r)}
    unlimited = {r.name for r in contract.default().rpcs if rate_limit_per_route(r)}
    assert credentials == {"Register", "Login", "Refresh"} and unlimited == {"CheckHealth"}


def test_replicas_are_health_checked_and_retries_have_a_budget():
    """Several replicas of a service: Envoy asks each one's gRPC health every second (a killed
    or starting replica takes no calls), a slow answer never ejects one, and retries are
    bounded by a budget rather than Envoy's default of three in flight."""
    backends = {**_backends(), "agents": [("127.0.0.1", 9100), ("127.0.0.1", 9101)]}
    clusters = {c["name"]: c for c in
                build(contract.default(), GatewayOptions(backends=backends))["static_resources"][
                    "clusters"]}
    agents, tools = clusters["agents"], clusters["tools"]
    assert [e["endpoint"]["address"]["socket_address"]["port_value"]
            for e in agents["load_assignment"]["endpoints"][0]["lb_endpoints"]] == [9100, 9101]
    (check,) = agents["health_checks"]
    assert "grpc_health_check" in check and check["interval"] == "1s"
    assert agents["outlier_detection"]["enforcing_consecutive_local_origin_failure"] == 0
    # One replica: nothing to choose between, so no checks (and no idle traffic).
    assert "health_checks" not in tools
    assert "enforcing_consecutive_local_origin_failure" not in tools["outlier_detection"]
    for cluster in (agents, tools):
        (threshold,) = cluster["circuit_breakers"]["thresholds"]
        assert threshold["retry_budget"]["min_retry_concurrency"] >= 6


def test_the_mcp_route_goes_to_the_integration_services_listener_with_its_scopes():
    """/api/v1/mcp reaches the MCP listener only with a scope that shows something there (the
    MCP server's own list), streams without a request timeout, and skips the transcoder."""
    from mesh.gateway.routes import MCP_CLUSTER, MCP_PATH, MCP_SCOPES
    from mesh.integration import mcp_listener, mcp_server

    assert set(MCP_SCOPES) == set(mcp_server.SCOPES) and MCP_PATH == mcp_listener.PATH
    without = build(contract.default(), GatewayOptions(backends=_backends()))
    assert MCP_CLUSTER not in json.dumps(without)
    config = build(contract.default(), GatewayOptions(backends=_backends(),
                                                      mcp_http=("127.0.0.1", 8082)))
    routes = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
        "typed_config"]["route_config"]["virtual_hosts"][0]["routes"]
    [route] = [r for r in routes if r["name"] == "mcp"]
    assert route["match"] == {"path": MCP_PATH}
    assert route["route"]["cluster"] == MCP_CLUSTER and route["route"]["timeout"] == "0s"
    per_route = route["typed_per_filter_config"]
    assert per_route["envoy.filters.http.grpc_json_transcoder"]["disabled"] is True
    granted = json.dumps(per_route["envoy.filters.http.rbac"])
    assert all(json.dumps(scope) in granted for scope in MCP_SCOPES)
    assert '"calls:read"' not in granted
    [cluster] = [c for c in config["static_resources"]["clusters"] if c["name"] == MCP_CLUSTER]
    assert "typed_extension_protocol_options" not in cluster  # HTTP/1.1 (uvicorn)
    assert json.dumps(MCP_PATH) in lua_source(contract.default())


def test_long_lived_connections_are_not_capped_at_envoys_default_of_1024():
    """Each open WebSocket (and MCP stream) holds one upstream connection: with Envoy's default
    circuit breaker the 1,025th socket hung in its handshake (bench/scale.py). The live
    service's per-tenant socket quota bounds them, not the gateway."""
    from mesh.gateway.routes import LIVE_WS_CLUSTER, MCP_CLUSTER

    config = build(contract.default(), GatewayOptions(
        backends=_backends(), live_websocket=("127.0.0.1", 9300), mcp_http=("127.0.0.1", 9301)))
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    for name in (LIVE_WS_CLUSTER, MCP_CLUSTER):
        (threshold,) = clusters[name]["circuit_breakers"]["thresholds"]
        for limit in ("max_connections", "max_pending_requests", "max_requests"):
            assert threshold[limit] >= 100_000, (name, limit)
        assert "typed_extension_protocol_options" not in clusters[name]  # HTTP/1.1
    (threshold,) = clusters["agents"]["circuit_breakers"]["thresholds"]
    assert "max_connections" not in threshold  # gRPC multiplexes calls on few connections
