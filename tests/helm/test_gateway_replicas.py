"""The gateway config's clusters with several replicas per service (`agentmesh up --replicas`,
`agentmesh gateway-config --backend name=h:p1,h:p2`), and one address as before."""

from __future__ import annotations

import json
import subprocess
import sys

from mesh import catalog, contract
from mesh.gateway.config import GatewayOptions, build


def _clusters(backends) -> dict[str, dict]:
    config = build(contract.default(), GatewayOptions(backends=backends))
    return {c["name"]: c for c in config["static_resources"]["clusters"]}


def _addresses(cluster: dict) -> list[tuple[str, int]]:
    endpoints = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    return [(e["endpoint"]["address"]["socket_address"]["address"],
             e["endpoint"]["address"]["socket_address"]["port_value"]) for e in endpoints]


def test_one_address_per_service_is_still_one_endpoint():
    clusters = _clusters({name: ("127.0.0.1", 7000 + i) for i, name in enumerate(catalog.names())})
    assert _addresses(clusters["agents"]) == [("127.0.0.1", 7000)]
    assert clusters["agents"]["type"] == "STATIC"


def test_replicas_are_endpoints_of_one_cluster_with_failover():
    backends = {name: ("127.0.0.1", 7000) for name in catalog.names()}
    backends["agents"] = [("127.0.0.1", 7101), ("127.0.0.1", 7102)]
    config = build(contract.default(), GatewayOptions(backends=backends))
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    assert _addresses(clusters["agents"]) == [("127.0.0.1", 7101), ("127.0.0.1", 7102)]
    assert clusters["agents"]["outlier_detection"]["consecutive_local_origin_failure"] >= 1
    routes = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
        "typed_config"]["route_config"]["virtual_hosts"][0]["routes"]
    get_agent = next(r for r in routes if r["name"].endswith("AgentService/GetAgent"))
    # Only requests that never reached a replica are retried by the gateway.
    assert set(get_agent["route"]["retry_policy"]["retry_on"].split(",")) == {
        "connect-failure", "refused-stream", "reset-before-request"}


def test_cli_takes_repeated_or_comma_separated_backends():
    argv = [sys.executable, "-m", "mesh.cli", "gateway-config"]
    for name in catalog.names():
        argv += ["--backend", f"{name}=10.0.0.1:50051"]
    argv += ["--backend", "agents=10.0.0.2:50051,10.0.0.3:50051"]
    config = json.loads(subprocess.run(argv, check=True, capture_output=True, text=True).stdout)
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    assert _addresses(clusters["agents"]) == [("10.0.0.1", 50051), ("10.0.0.2", 50051),
                                              ("10.0.0.3", 50051)]
    assert _addresses(clusters["identity"]) == [("10.0.0.1", 50051)]
