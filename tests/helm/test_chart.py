"""The Helm chart, checked with Helm's own Go SDK (helm-python-sdk, no helm binary) and the
Kubernetes OpenAPI schemas (kubernetes-validate), since no cluster exists here: lint clean, every
rendered manifest schema-valid with default and production-like values, the gateway's Envoy
config exactly what `agentmesh gateway-config` prints for the same backends (and accepted by
Envoy itself), and a misspelt value refused by values.schema.json."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from mesh import catalog
from mesh.build import helm as helmgen

CHART = Path(__file__).resolve().parents[2] / "helm" / "agentmesh"
PRODUCTION = CHART / "ci" / "production-values.yaml"
# The chart's minimum (Chart.yaml kubeVersion) and the version it is pinned to be checked on.
KUBE_VERSIONS = ("1.30.0", "1.33.0")
RELEASE, NAMESPACE = "am", "agentmesh"
# Custom resources: not in the Kubernetes schemas; checked by shape below.
CUSTOM_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}


def _values(kind: str) -> dict:
    return {} if kind == "default" else yaml.safe_load(PRODUCTION.read_text())


def _render(values: dict) -> list[dict]:
    chart = helm.Chart.load(CHART)
    rendered = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    documents = []
    for path, text in rendered.items():
        if path.endswith("NOTES.txt"):
            continue
        documents.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return documents


def _by_kind(documents: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in documents if d["kind"] == kind}


def _fullname(kind: str) -> str:
    return "mesh" if kind == "production" else f"{RELEASE}-agentmesh"


def test_generated_files_are_current():
    """files/envoy.json, the descriptor set and the service list match the contract."""
    assert helmgen.stale() == [], "run `agentmesh helm-gen`"


@pytest.mark.parametrize("kind", ["default", "production"])
def test_lint_is_clean(kind):
    report = helm.lint(CHART, _values(kind), strict=True, kube_version=f"v{KUBE_VERSIONS[-1]}")
    assert report["errors"] == []
    problems = [m for m in report["messages"] if m["severity"] >= 2]  # warnings and errors
    assert problems == []


@pytest.mark.parametrize("kind", ["default", "production"])
def test_every_manifest_is_valid_kubernetes(kind):
    documents = _render(_values(kind))
    assert len(documents) > 30
    for document in documents:
        if (document["apiVersion"], document["kind"]) in CUSTOM_KINDS:
            assert document["spec"]["endpoints"] and document["spec"]["selector"]["matchLabels"]
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(document, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                pytest.fail(f"{document['kind']}/{document['metadata']['name']} on "
                            f"{version}: {error.message}")
    kinds = {d["kind"] for d in documents}
    assert {"Deployment", "Service", "ConfigMap", "Job", "NetworkPolicy", "PodDisruptionBudget",
            "ServiceAccount"} <= kinds
    if kind == "production":
        assert {"HorizontalPodAutoscaler", "Ingress", "ServiceMonitor"} <= kinds
    else:
        assert not {"HorizontalPodAutoscaler", "Ingress", "ServiceMonitor"} & kinds
    assert "Secret" not in kinds  # secrets come from existing Secrets or the bootstrap Job


@pytest.mark.parametrize("kind", ["default", "production"])
def test_every_service_is_deployed_hardened_and_drains(kind):
    documents = _render(_values(kind))
    fullname = _fullname(kind)
    deployments = _by_kind(documents, "Deployment")
    services = _by_kind(documents, "Service")
    config = _by_kind(documents, "ConfigMap")[f"{fullname}-config"]["data"]
    peers = dict(item.split("=") for item in config["AGENTMESH_PEERS"].split(","))
    assert peers == {name: f"{fullname}-{name}:50051" for name in catalog.names()}
    for name in catalog.names():
        deployment = deployments[f"{fullname}-{name}"]
        assert services[f"{fullname}-{name}"]["spec"]["clusterIP"] == "None"  # every pod seen
        pod = deployment["spec"]["template"]
        assert pod["metadata"]["annotations"]["checksum/config"]
        (container,) = pod["spec"]["containers"]
        assert container["args"] == ["serve", name]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"] == {"port": 50051}
        security = container["securityContext"]
        assert security["runAsNonRoot"] and security["readOnlyRootFilesystem"]
        assert security["capabilities"]["drop"] == ["ALL"]
        assert not security["allowPrivilegeEscalation"]
        assert pod["spec"]["securityContext"]["runAsNonRoot"]
        assert container["resources"]["requests"] and container["resources"]["limits"]
        env = {e["name"]: e for e in container["env"]}
        drain = int(env["AGENTMESH_GRACE_PERIOD_SECONDS"]["value"])
        sleep = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert pod["spec"]["terminationGracePeriodSeconds"] == sleep + drain + 5
        for secret in ("AGENTMESH_DATABASE_URL", "AGENTMESH_SECRETS_KEK",
                       "AGENTMESH_INTERNAL_TOKEN"):
            assert "secretKeyRef" in env[secret]["valueFrom"]
        token = env["AGENTMESH_INTERNAL_TOKEN"]["valueFrom"]["secretKeyRef"]
        assert token == {"name": "agentmesh-internal" if kind == "production"
                         else f"{fullname}-internal", "key": "internal-token"}
        # Prometheus scrapes each service on a port of its own, never the public listener.
        assert {"name": "metrics", "containerPort": 9090, "protocol": "TCP"} in \
            container["ports"]
    gateway = deployments[f"{fullname}-gateway"]["spec"]["template"]
    assert gateway["metadata"]["annotations"]["checksum/config"]
    assert gateway["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"]
    jobs = _by_kind(documents, "Job")
    migrate = jobs[f"{fullname}-migrate"]
    assert migrate["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert migrate["spec"]["template"]["spec"]["containers"][0]["args"] == ["db", "upgrade"]
    if kind == "default":  # no existing key Secret: the bootstrap Job makes one before migrating
        keys = jobs[f"{fullname}-keys-bootstrap"]
        assert int(keys["metadata"]["annotations"]["helm.sh/hook-weight"]) < \
            int(migrate["metadata"]["annotations"]["helm.sh/hook-weight"])
        assert keys["spec"]["template"]["spec"]["containers"][0]["args"] == [
            "keys", "bootstrap-secret", "--secret", f"{fullname}-keys",
            "--internal-token-secret", f"{fullname}-internal"]
        role = _by_kind(documents, "Role")[f"{fullname}-keys-bootstrap"]
        assert role["rules"][1]["resourceNames"] == [f"{fullname}-keys", f"{fullname}-internal"]
    else:
        assert f"{fullname}-keys-bootstrap" not in jobs


def _rendered_envoy(documents: list[dict], fullname: str) -> tuple[dict, bytes]:
    maps = _by_kind(documents, "ConfigMap")
    config = json.loads(maps[f"{fullname}-gateway"]["data"]["envoy.json"])
    descriptor = base64.b64decode(
        maps[f"{fullname}-gateway-descriptor"]["binaryData"]["descriptor.binpb"])
    return config, descriptor


@pytest.mark.parametrize("kind, global_limit", [("default", True), ("production", True),
                                                ("default", False)])
def test_rendered_envoy_config_is_what_agentmesh_gateway_config_prints(kind, global_limit,
                                                                       tmp_path):
    """With gateway.globalRateLimit.enabled (the default) the gateway's filter chain carries the
    global rate-limit filter asking governance, as `AGENTMESH_GATEWAY_GLOBAL_RATE_LIMIT=1
    agentmesh gateway-config` prints it; without, the local buckets only."""
    import os

    fullname = _fullname(kind)
    values = _values(kind)
    values.setdefault("gateway", {})["globalRateLimit"] = {"enabled": global_limit}
    config, descriptor = _rendered_envoy(_render(values), fullname)
    filters = [f["name"] for f in config["static_resources"]["listeners"][0]["filter_chains"][0][
        "filters"][0]["typed_config"]["http_filters"]]
    assert ("envoy.filters.http.ratelimit" in filters) == global_limit
    argv = [sys.executable, "-m", "mesh.cli", "gateway-config", "--listen", "0.0.0.0",
            "--port", "8080", "--admin-socket", "/tmp/envoy-admin.sock", "--metrics-port", "9102",
            "--descriptor", "/etc/agentmesh/descriptor.binpb"]
    for name in catalog.names():
        argv += ["--backend", f"{name}={fullname}-{name}:50051"]
    argv += ["--websocket", f"{fullname}-live:8081", "--mcp", f"{fullname}-integration:8082"]
    env = {**os.environ, "AGENTMESH_GATEWAY_GLOBAL_RATE_LIMIT": "1" if global_limit else "0"}
    printed = json.loads(subprocess.run(argv, check=True, capture_output=True, text=True,
                                        env=env).stdout)
    assert config == printed
    # Envoy itself accepts it, with the descriptor set from the chart's ConfigMap.
    from mesh.supervisor import envoy_binary

    (tmp_path / "descriptor.binpb").write_bytes(descriptor)
    text = json.dumps(config).replace("/etc/agentmesh/descriptor.binpb",
                                      str(tmp_path / "descriptor.binpb"))
    (tmp_path / "envoy.json").write_text(text)
    result = subprocess.run([envoy_binary(), "--mode", "validate", "-c",
                             str(tmp_path / "envoy.json")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("kind", ["default", "production"])
def test_network_policies_let_the_gateway_reach_every_port_its_envoy_calls(kind):
    """Every port of the release the rendered Envoy has a cluster for (gRPC, the live service's
    WebSockets, integration's MCP listener) is open in the gateway's egress and in the
    services' ingress: a port missing there works on a laptop and fails in a cluster that
    enforces NetworkPolicy."""
    fullname = _fullname(kind)
    documents = _render(_values(kind))
    config, _ = _rendered_envoy(documents, fullname)
    called = set()
    for cluster in config["static_resources"]["clusters"]:
        for group in cluster.get("load_assignment", {}).get("endpoints", []):
            for endpoint in group["lb_endpoints"]:
                address = endpoint["endpoint"]["address"].get("socket_address")
                if address and address["address"].startswith(f"{fullname}-"):
                    called.add(address["port_value"])
    assert {50051, 8081, 8082} <= called
    policies = _by_kind(documents, "NetworkPolicy")

    def opened(rules: list[dict]) -> set[int]:
        return {p["port"] for rule in rules if "podSelector" in json.dumps(rule.get("to")
                                                                             or rule.get("from"))
                for p in rule.get("ports", [])}

    assert called <= opened(policies[f"{fullname}-gateway"]["spec"]["egress"])
    assert called <= opened(policies[f"{fullname}-services"]["spec"]["ingress"])


@pytest.mark.parametrize("typo", [
    {"gatway": {"replicaCount": 3}},
    {"defaults": {"replicaCont": 3}},
    {"services": {"agent": {"replicaCount": 3}}},  # no such service
    {"services": {"agents": {"resources": {"request": {"cpu": "1"}}}}},
    {"database": {"existingSecret": "pg", "urlKey": "url", "password": "hunter2"}},
])
def test_a_values_typo_fails_with_a_schema_error(typo):
    chart = helm.Chart.load(CHART)
    with pytest.raises(helm.HelmValuesError) as raised:
        chart.validate_schema(typo)
    message = str(raised.value)
    assert "additional properties" in message or "invalid propertyName" in message, message
    with pytest.raises(helm.HelmValuesError, match="don't meet the specifications of the schema"):
        chart.render(typo, name=RELEASE, namespace=NAMESPACE, is_install=True)  # = helm install
    report = helm.lint(CHART, typo)
    assert report["errors"] or any(m["severity"] == 3 for m in report["messages"])


def test_per_service_values_fall_back_to_the_defaults():
    documents = _render(_values("production"))
    deployments = _by_kind(documents, "Deployment")
    autoscalers = _by_kind(documents, "HorizontalPodAutoscaler")
    budgets = _by_kind(documents, "PodDisruptionBudget")

    def container(name: str) -> dict:
        return deployments[f"mesh-{name}"]["spec"]["template"]["spec"]["containers"][0]

    # agents overrides maxReplicas and resources; the rest of autoscaling comes from defaults.
    assert autoscalers["mesh-agents"]["spec"]["maxReplicas"] == 20
    assert autoscalers["mesh-agents"]["spec"]["minReplicas"] == 3
    assert container("agents")["resources"]["requests"]["cpu"] == "500m"
    assert autoscalers["mesh-tools"]["spec"]["maxReplicas"] == 12
    assert container("tools")["resources"]["requests"]["cpu"] == "250m"
    # integration turns autoscaling off: a fixed replica count, no autoscaler.
    assert "mesh-integration" not in autoscalers
    assert deployments["mesh-integration"]["spec"]["replicas"] == 2
    assert "replicas" not in deployments["mesh-agents"]["spec"]  # the autoscaler owns it
    # observability drains longer: its grace period follows.
    observability = deployments["mesh-observability"]["spec"]["template"]["spec"]
    assert observability["terminationGracePeriodSeconds"] == 5 + 45 + 5
    env = {e["name"]: e.get("value") for e in container("observability")["env"]}
    assert env["AGENTMESH_LOG_LEVEL"] == "WARNING" and env["AGENTMESH_GRACE_PERIOD_SECONDS"] == "45"
    assert set(budgets) == {f"mesh-{n}" for n in catalog.names()} | {"mesh-gateway"}


def test_a_service_can_be_switched_off():
    documents = _render({"services": {"templates": {"enabled": False}}})
    names = {d["metadata"]["name"] for d in documents}
    assert f"{RELEASE}-agentmesh-templates" not in names
    assert f"{RELEASE}-agentmesh-agents" in names


def test_prometheus_scrapes_the_metrics_ports_through_service_monitors():
    """The gateway's metrics listener and every service's metrics port, each allowed only from
    metricsFrom; the public listener's /metrics is an operator's route, not a scrape target."""
    documents = _render(_values("production"))
    monitors = {d["metadata"]["name"]: d for d in documents if d["kind"] == "ServiceMonitor"}
    assert set(monitors) == {"mesh-gateway", "mesh-services"}
    assert monitors["mesh-gateway"]["spec"]["endpoints"][0]["port"] == "metrics"
    services = monitors["mesh-services"]["spec"]
    assert services["endpoints"][0] == {"port": "metrics", "path": "/metrics", "interval": "30s",
                                        "scrapeTimeout": "10s"}
    assert services["selector"]["matchExpressions"][0]["values"] == catalog.names()
    for name in catalog.names():
        ports = _by_kind(documents, "Service")[f"mesh-{name}"]["spec"]["ports"]
        assert {"name": "metrics", "port": 9090, "targetPort": "metrics",
                "protocol": "TCP"} in ports
    policy = _by_kind(documents, "NetworkPolicy")["mesh-services"]["spec"]["ingress"]
    scrape = next(rule for rule in policy if rule["ports"] == [{"port": 9090, "protocol": "TCP"}])
    assert scrape["from"] == yaml.safe_load(PRODUCTION.read_text())["networkPolicy"]["metricsFrom"]
    config = _by_kind(documents, "ConfigMap")["mesh-config"]["data"]
    assert config["AGENTMESH_METRICS_PORT"] == "9090"


def test_internal_tls_mounts_the_secret_and_the_gateway_speaks_tls_to_every_service(tmp_path):
    """internalTls.existingSecret: every service pod gets the AGENTMESH_TLS_* settings and the
    Secret's files, probes that do not need TLS, and the gateway a TLS transport socket on every
    service's cluster (mesh.gateway.clusters.upstream_tls), which Envoy accepts."""
    fullname = _fullname("default")
    documents = _render({"internalTls": {"existingSecret": "mesh-internal-tls",
                                         "serverName": "agentmesh-internal"}})
    deployments = _by_kind(documents, "Deployment")
    for name in catalog.names():
        pod = deployments[f"{fullname}-{name}"]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["AGENTMESH_TLS_CA_FILE"] == "/etc/agentmesh-tls/ca.crt"
        assert env["AGENTMESH_TLS_SERVER_NAME"] == "agentmesh-internal"
        assert {"name": "internal-tls", "mountPath": "/etc/agentmesh-tls",
                "readOnly": True} in container["volumeMounts"]
        assert {"name": "internal-tls", "secret": {"secretName": "mesh-internal-tls"}} in \
            pod["volumes"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["tcpSocket"] == {"port": "grpc"}
    config, descriptor = _rendered_envoy(documents, fullname)
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    for name in catalog.names():
        tls = clusters[name]["transport_socket"]["typed_config"]
        assert tls["sni"] == "agentmesh-internal"
    assert "transport_socket" not in clusters["gateway_self"]
    # Envoy accepts it (with files where the Secret would be)
    from mesh.supervisor import envoy_binary

    from tests.runtime.test_internal_grpc import _authority

    files = _authority(tmp_path / "pki", "chart CA")
    (tmp_path / "descriptor.binpb").write_bytes(descriptor)
    text = json.dumps(config).replace("/etc/agentmesh/descriptor.binpb",
                                      str(tmp_path / "descriptor.binpb"))
    for name, path in (("ca.crt", files["ca"]), ("tls.crt", files["cert"]),
                       ("tls.key", files["key"])):
        text = text.replace(f"/etc/agentmesh-tls/{name}", path)
    (tmp_path / "envoy.json").write_text(text)
    result = subprocess.run([envoy_binary(), "--mode", "validate", "-c",
                             str(tmp_path / "envoy.json")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
