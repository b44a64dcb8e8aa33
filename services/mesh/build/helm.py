"""Generates the Helm chart's inputs from the contract, with the same code as `agentmesh up`.

    agentmesh helm-gen            # rewrite helm/agentmesh/files/ and the schema's service list
    agentmesh helm-gen --check    # exit 1 when they are stale (a test runs this)

Writes, under `helm/agentmesh/`:

* `files/envoy.json`: the gateway's bootstrap, built by `mesh.gateway.config.build()` for the
  backends `<fullname>-<service>:50051` (the chart's headless Services). The release's full
  name is not known here, so it is the placeholder `__AGENTMESH_FULLNAME__`; the chart replaces
  it (`replace` in templates/gateway-configmap.yaml), nothing else. `agentmesh gateway-config
  --backend <service>=<fullname>-<service>:50051 ... --listen 0.0.0.0 --admin-socket
  /tmp/envoy-admin.sock --metrics-port 9102 --descriptor /etc/agentmesh/descriptor.binpb`
  prints the same document (tests/helm checks it).
* `files/envoy-global-ratelimit.json`: the same bootstrap with Envoy's global rate-limit filter
  (`mesh.gateway.ratelimits.global_rate_limit`: governance's RateLimitService, counters in
  Redis, so a limit holds across gateway and governance replicas); what the chart mounts when
  `gateway.globalRateLimit.enabled`. The same `agentmesh gateway-config` command with
  `AGENTMESH_GATEWAY_GLOBAL_RATE_LIMIT=1` prints it.
* `files/descriptor.binpb`: the descriptor set Envoy's transcoder reads, without source info
  (comments): it reaches Envoy through a ConfigMap, which holds at most 1 MiB.
* `files/services.json`: the services the chart deploys (one Deployment/Service each), and the
  same list as the allowed keys of `services` in values.schema.json.
* `files/upstream-tls.json`: the `transport_socket` the gateway's service clusters get when
  `internalTls.existingSecret` is set (`mesh.gateway.clusters.upstream_tls`, files mounted at
  TLS_DIR); the server name is the placeholder `__AGENTMESH_TLS_SERVER_NAME__`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mesh.build.repo import DESCRIPTOR_SET, REPO_ROOT

CHART_DIR = REPO_ROOT / "helm" / "agentmesh"
FILES_DIR = CHART_DIR / "files"
SCHEMA = CHART_DIR / "values.schema.json"
FULLNAME = "__AGENTMESH_FULLNAME__"
SERVICE_PORT = 50051
LIVE_WS_PORT = 8081  # the live service's WebSocket listener (templates/services.yaml)
MCP_PORT = 8082  # the integration service's MCP listener (templates/services.yaml)
GATEWAY_PORT = 8080
# Envoy's admin interface: a Unix socket in the gateway pod's /tmp (an emptyDir), never a port.
ADMIN_SOCKET = "/tmp/envoy-admin.sock"
METRICS_PORT = 9102  # /stats/prometheus for the ServiceMonitor
DESCRIPTOR_IN_POD = "/etc/agentmesh/descriptor.binpb"
# The internal TLS Secret (tls.crt, tls.key, ca.crt) in every pod, when internalTls is set.
TLS_DIR = "/etc/agentmesh-tls"
TLS_SERVER_NAME = "__AGENTMESH_TLS_SERVER_NAME__"


def backends(fullname: str) -> dict[str, tuple[str, int]]:
    """Where the chart's Services are: `<fullname>-<service>:50051` for every service."""
    from mesh import catalog

    return {name: (f"{fullname}-{name}", SERVICE_PORT) for name in catalog.names()}


def gateway_config(fullname: str = FULLNAME, global_rate_limit: bool = False) -> dict:
    from mesh import contract
    from mesh.gateway.config import GatewayOptions, build

    options = GatewayOptions(backends=backends(fullname), listen_address="0.0.0.0",
                             listen_port=GATEWAY_PORT, admin_socket=ADMIN_SOCKET,
                             metrics_port=METRICS_PORT, descriptor_set=Path(DESCRIPTOR_IN_POD),
                             live_websocket=(f"{fullname}-live", LIVE_WS_PORT),
                             mcp_http=(f"{fullname}-integration", MCP_PORT),
                             global_rate_limit=global_rate_limit)
    return build(contract.default(), options)


def upstream_tls() -> dict:
    from mesh.gateway.clusters import upstream_tls as socket
    from mesh.gateway.options import GatewayOptions

    return socket(GatewayOptions(backends={}, upstream_tls_ca_file=f"{TLS_DIR}/ca.crt",
                                 upstream_tls_cert_file=f"{TLS_DIR}/tls.crt",
                                 upstream_tls_key_file=f"{TLS_DIR}/tls.key",
                                 upstream_tls_server_name=TLS_SERVER_NAME))


def _descriptor() -> bytes:
    from google.protobuf import descriptor_pb2

    files = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR_SET.read_bytes())
    for file in files.file:
        file.ClearField("source_code_info")
    return files.SerializeToString(deterministic=True)


def _schema_text() -> str:
    from mesh import catalog

    schema = json.loads(SCHEMA.read_text())
    schema["properties"]["services"]["propertyNames"] = {"enum": catalog.names()}
    return json.dumps(schema, indent=2) + "\n"


def _json(document: dict) -> bytes:
    return (json.dumps(document, separators=(",", ":")) + "\n").encode()


def outputs() -> dict[Path, bytes]:
    from mesh import catalog

    return {
        FILES_DIR / "envoy.json": _json(gateway_config()),
        FILES_DIR / "envoy-global-ratelimit.json": _json(gateway_config(global_rate_limit=True)),
        FILES_DIR / "descriptor.binpb": _descriptor(),
        FILES_DIR / "services.json": (json.dumps({"services": catalog.names()}) + "\n").encode(),
        FILES_DIR / "upstream-tls.json": (json.dumps(upstream_tls(), indent=1) + "\n").encode(),
        SCHEMA: _schema_text().encode(),
    }


def stale() -> list[Path]:
    return [path for path, data in outputs().items()
            if not path.exists() or path.read_bytes() != data]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agentmesh helm-gen", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail when the chart is stale")
    args = parser.parse_args(argv)
    if args.check:
        paths = stale()
        if paths:
            print("helm/agentmesh is stale against the contract; run `agentmesh helm-gen`:",
                  *(str(p.relative_to(REPO_ROOT)) for p in paths), sep="\n  ", file=sys.stderr)
            return 1
        print("helm/agentmesh is up to date")
        return 0
    FILES_DIR.mkdir(parents=True, exist_ok=True)
    for path, data in outputs().items():
        path.write_bytes(data)
    print(f"generated {FILES_DIR.relative_to(REPO_ROOT)}/ and the schema's service list")
    return 0
