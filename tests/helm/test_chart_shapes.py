"""The chart refuses shapes that would deploy a platform that misbehaves quietly, each with a
message saying what to set, and renders valid manifests for the shapes it accepts: external
NATS/Redis/PostgreSQL by URL or existing Secret (production), bundled ones (a trial), SQLite with
one replica of everything."""

from __future__ import annotations

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from tests.helm.test_chart import (CHART, CUSTOM_KINDS, KUBE_VERSIONS, NAMESPACE, PRODUCTION,
                                   RELEASE, _by_kind, _render)

ONE_OF_EACH = {"defaults": {"replicaCount": 1}, "gateway": {"replicaCount": 1}}


def _production() -> dict:
    return yaml.safe_load(PRODUCTION.read_text())


def _validate(documents: list[dict]) -> None:
    for document in documents:
        if (document["apiVersion"], document["kind"]) in CUSTOM_KINDS:
            continue
        for version in KUBE_VERSIONS:
            kubernetes_validate.validate(document, version, strict=True)


def _env(documents: list[dict], deployment: str) -> dict[str, dict]:
    container = _by_kind(documents, "Deployment")[deployment]["spec"]["template"]["spec"][
        "containers"][0]
    return {e["name"]: e for e in container["env"]}


@pytest.mark.parametrize("values, message", [
    ({"nats": {"bundled": {"enabled": False}}},
     "unsafe: the live service may run 2 replicas but no NATS is configured"),
    ({"nats": {"bundled": {"enabled": False}}, "services": {"live": {"replicaCount": 1,
                                                                     "autoscaling": {
                                                                         "enabled": True}}}},
     "unsafe: the live service may run 10 replicas but no NATS is configured"),
    ({"redis": {"bundled": {"enabled": False}}},
     "unsafe: the governance service may run 2 replicas but no Redis is configured"),
    ({"database": {"existingSecret": "", "urlKey": "url", "sqlite": True},
      "environment": "development"},
     "unsafe: database.sqlite with more than one replica of agents, governance"),
    ({"database": {"existingSecret": "", "urlKey": "url", "sqlite": True},
      "environment": "development", "defaults": {"replicaCount": 1}},
     "unsafe: database.sqlite with more than one replica of gateway;"),
    ({"database": {"existingSecret": "", "urlKey": "url", "sqlite": True},
      "environment": "development", **ONE_OF_EACH, "services": {"tools": {"replicaCount": 2}}},
     "unsafe: database.sqlite with more than one replica of tools;"),
    ({"database": {"existingSecret": "", "urlKey": "url", "sqlite": True}, **ONE_OF_EACH},
     "unsafe: database.sqlite with environment production"),
])
def test_an_unsafe_shape_fails_the_render_with_its_message(values, message):
    chart = helm.Chart.load(CHART)
    chart.validate_schema(values)  # the values are well formed: the shape is what is refused
    with pytest.raises(helm.HelmRenderError, match="execution error") as raised:
        chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    assert message in str(raised.value)


def test_the_same_shapes_pass_once_the_store_is_there():
    for values in ({"nats": {"bundled": {"enabled": False}, "url": "nats://nats.infra:4222"}},
                   {"redis": {"bundled": {"enabled": False}, "url": "redis://redis.infra:6379/0"}},
                   {"nats": {"bundled": {"enabled": False}},
                    "services": {"live": {"replicaCount": 1}}},
                   {"redis": {"bundled": {"enabled": False}},
                    "services": {"governance": {"replicaCount": 1}}}):
        _render(values)


def test_production_render_takes_every_store_from_existing_secrets_and_bundles_nothing():
    values = _production()
    helm.Chart.load(CHART).validate_schema(values)
    documents = _render(values)
    _validate(documents)
    names = {d["metadata"]["name"] for d in documents}
    assert not {"mesh-nats", "mesh-redis", "mesh-postgresql"} & names
    for service in ("live", "governance", "agents"):
        env = _env(documents, f"mesh-{service}")
        assert env["AGENTMESH_NATS_URL"]["valueFrom"]["secretKeyRef"] == {
            "name": "agentmesh-nats", "key": "NATS_URL"}
        assert env["AGENTMESH_REDIS_URL"]["valueFrom"]["secretKeyRef"] == {
            "name": "agentmesh-redis", "key": "REDIS_URL"}
        assert env["AGENTMESH_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
            "name": "agentmesh-postgres", "key": "DATABASE_URL"}
    config = _by_kind(documents, "ConfigMap")["mesh-config"]["data"]
    assert "AGENTMESH_NATS_URL" not in config and "AGENTMESH_REDIS_URL" not in config


def test_a_trial_bundles_nats_redis_and_postgresql_reachable_only_from_the_release():
    documents = _render({"postgresql": {"bundled": {"enabled": True}}})
    _validate(documents)
    fullname = f"{RELEASE}-agentmesh"
    config = _by_kind(documents, "ConfigMap")[f"{fullname}-config"]["data"]
    assert config["AGENTMESH_NATS_URL"] == f"nats://{fullname}-nats:4222"
    assert config["AGENTMESH_REDIS_URL"] == f"redis://{fullname}-redis:6379/0"
    env = _env(documents, f"{fullname}-agents")
    assert env["AGENTMESH_DATABASE_URL"]["value"] == \
        f"postgresql+psycopg://postgres@{fullname}-postgresql:5432/agentmesh"
    deployments = _by_kind(documents, "Deployment")
    nats = deployments[f"{fullname}-nats"]["spec"]["template"]["spec"]["containers"][0]
    assert "--jetstream" in nats["args"]
    assert f"{fullname}-postgresql" in _by_kind(documents, "StatefulSet")
    policies = _by_kind(documents, "NetworkPolicy")
    for store in ("nats", "redis", "postgresql"):
        rule = policies[f"{fullname}-{store}"]["spec"]["ingress"][0]
        assert rule["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/instance"] == RELEASE
    migrate = _by_kind(documents, "Job")[f"{fullname}-migrate"]
    # the bundled database exists only after pre-install hooks: migrate right after install
    assert migrate["metadata"]["annotations"]["helm.sh/hook"] == "post-install,pre-upgrade"


def test_sqlite_with_one_replica_of_everything_is_a_valid_trial():
    values = {"database": {"existingSecret": "", "urlKey": "url", "sqlite": True},
              "environment": "development", **ONE_OF_EACH}
    documents = _render(values)
    _validate(documents)
    env = _env(documents, f"{RELEASE}-agentmesh-agents")
    assert "AGENTMESH_DATABASE_URL" not in env


def test_governance_gets_the_global_rate_limits_from_values():
    documents = _render({"rateLimits": {"perTenantPerMinute": 50, "routes": {
        "/agentmesh.agents.v1.AgentService/InteractWithAgent": 5}}})
    config = _by_kind(documents, "ConfigMap")[f"{RELEASE}-agentmesh-config"]["data"]
    assert config["AGENTMESH_GATEWAY_GLOBAL_RATE_LIMIT"] == "1"
    assert config["AGENTMESH_RATE_LIMIT_PER_TENANT_PER_MINUTE"] == "50"
    assert config["AGENTMESH_RATE_LIMIT_GLOBAL_PER_MINUTE"] == "1000"
    assert config["AGENTMESH_RATE_LIMIT_ROUTES"] == \
        '{"/agentmesh.agents.v1.AgentService/InteractWithAgent":5}'
    off = _render({"gateway": {"globalRateLimit": {"enabled": False}}})
    assert _by_kind(off, "ConfigMap")[f"{RELEASE}-agentmesh-config"]["data"][
        "AGENTMESH_GATEWAY_GLOBAL_RATE_LIMIT"] == "0"


def test_helm_test_runs_the_smoke_flow_from_the_image_through_the_gateway():
    documents = _render(_production())
    _validate(documents)
    pod = _by_kind(documents, "Pod")["mesh-smoke"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (container,) = pod["spec"]["containers"]
    assert container["image"].endswith("@sha256:" + "0123456789abcdef" * 4)
    assert container["command"] == ["python", "-m", "mesh.smoke"]
    args = container["args"]
    assert args[args.index("--gateway") + 1] == "http://mesh-gateway:80"
    assert args[args.index("--model-url") + 1] == "http://mesh-smoke-model:8099/v1"
    service = _by_kind(documents, "Service")["mesh-smoke-model"]
    assert service["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "smoke"
    config = _by_kind(documents, "ConfigMap")["mesh-config"]["data"]
    assert config["AGENTMESH_EGRESS_ALLOW"] == "mesh-smoke-model"
    policies = _by_kind(documents, "NetworkPolicy")
    smoke = {"matchLabels": service["spec"]["selector"]}
    assert {"to": [{"podSelector": smoke}], "ports": [{"port": 8099, "protocol": "TCP"}]} in \
        policies["mesh-services"]["spec"]["egress"]
    assert {"from": [{"podSelector": smoke}], "ports": [{"port": 8080, "protocol": "TCP"}]} in \
        policies["mesh-gateway"]["spec"]["ingress"]
    off = _render({"tests": {"enabled": False}})
    assert "Pod" not in {d["kind"] for d in off}


def test_restart_in_the_cluster_grants_the_system_pod_patch_on_the_release_deployments_only():
    documents = _render(_production())
    _validate(documents)
    role = _by_kind(documents, "Role")["mesh-restart"]
    (rule,) = role["rules"]
    assert rule["verbs"] == ["get", "patch"] and rule["resources"] == ["deployments"]
    from mesh import catalog

    assert rule["resourceNames"] == [f"mesh-{name}" for name in catalog.names()]
    binding = _by_kind(documents, "RoleBinding")["mesh-restart"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "mesh-system",
                                    "namespace": NAMESPACE}]
    deployments = _by_kind(documents, "Deployment")
    system = deployments["mesh-system"]["spec"]["template"]["spec"]
    assert system["serviceAccountName"] == "mesh-system" and system["automountServiceAccountToken"]
    env = _env(documents, "mesh-system")
    assert env["AGENTMESH_KUBERNETES_RESTART"]["value"] == "1"
    assert env["AGENTMESH_KUBERNETES_DEPLOYMENT_PREFIX"]["value"] == "mesh-"
    assert env["AGENTMESH_KUBERNETES_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == \
        "metadata.namespace"
    # No other pod gets a token.
    for name, deployment in deployments.items():
        if name != "mesh-system" and name.startswith("mesh-"):
            assert deployment["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    assert "mesh-system-api" in _by_kind(documents, "NetworkPolicy")
    off = _render({})
    assert "Role" not in {d["kind"] for d in off if d["metadata"]["name"].endswith("-restart")}


def test_extra_volumes_mounts_and_init_containers_add_up_per_service():
    ca = {"name": "ca", "secret": {"secretName": "corporate-ca"}}
    wait = {"name": "wait-db", "image": "busybox:1.36", "command": ["sh", "-c", "true"]}
    documents = _render({
        "defaults": {"extraVolumes": [ca],
                     "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/ssl/corp"}],
                     "initContainers": [wait]},
        "services": {"agents": {"extraVolumes": [{"name": "x", "emptyDir": {}}],
                                "extraVolumeMounts": [{"name": "x", "mountPath": "/x"}]}},
        "gateway": {"extraVolumes": [ca],
                    "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/ssl/corp"}]}})
    _validate(documents)
    deployments = _by_kind(documents, "Deployment")
    agents = deployments[f"{RELEASE}-agentmesh-agents"]["spec"]["template"]["spec"]
    assert [v["name"] for v in agents["volumes"]] == ["tmp", "ca", "x"]
    assert [m["mountPath"] for m in agents["containers"][0]["volumeMounts"]] == \
        ["/tmp", "/etc/ssl/corp", "/x"]
    assert agents["initContainers"] == [wait]
    tools = deployments[f"{RELEASE}-agentmesh-tools"]["spec"]["template"]["spec"]
    assert [v["name"] for v in tools["volumes"]] == ["tmp", "ca"]
    gateway = deployments[f"{RELEASE}-agentmesh-gateway"]["spec"]["template"]["spec"]
    assert [v["name"] for v in gateway["volumes"]][-1] == "ca"
    assert "initContainers" not in gateway
