"""What Helm would deploy is what is tested: the chart rendered with production-like values
(helm/agentmesh/ci/production-values.yaml: external PostgreSQL, Redis and NATS from existing
Secrets, the global rate limit, two replicas of everything), and every rendered Deployment's
container started the way its manifest says, one process per replica on 127.0.0.1
(tests/support/kubelet.py says exactly what stands in for the cluster: pod IPs, Service DNS,
mounts). The migration Job runs first, as the pre-install hook; the `helm test` Pod runs the
smoke flow (mesh.smoke) through the rendered Envoy.

* the smoke flow passes, and again after one replica of every service and of the gateway is
  killed (SIGKILL; nothing restarts them);
* live events arrive complete on one WebSocket while two live replicas share them over NATS;
* a limit of N requests per minute holds across the two gateway replicas (governance's
  RateLimitService, counters in Redis).

Needs PostgreSQL (127.0.0.1:5432, a fresh database per run), Redis (6379) and NATS with
JetStream (4222) on this machine: the stores the production values point at are outside the
release, as they are in production.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import time
import uuid

import httpx2
import pytest
import yaml
from websockets.asyncio.client import connect

from tests.e2e.test_scale_out import drop_database, fresh_database
from tests.helm.test_chart import PRODUCTION, _render
from tests.support.kubelet import Release

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(1500)]
REDIS_URL = os.environ.get("AGENTMESH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
NATS_URL = os.environ.get("AGENTMESH_TEST_NATS_URL", "nats://127.0.0.1:4222")
LIMITED_ROUTE = "/agentmesh.governance.v1.GovernanceService/GetRateLimits"
LIMIT = 6
FINAL = {"EXECUTION_STATUS_COMPLETED", "EXECUTION_STATUS_FAILED", "EXECUTION_STATUS_CANCELLED"}


def production_like_values() -> dict:
    """The chart's production values, with what one machine cannot have changed: no
    autoscaler (fixed replica counts: two of everything), no OTLP collector, and the global
    rate limits of this test (one route limited to LIMIT a minute, nothing else)."""
    values = yaml.safe_load(PRODUCTION.read_text())
    values["otelExporterOtlpEndpoint"] = ""
    values["defaults"]["autoscaling"]["enabled"] = False
    values["defaults"]["replicaCount"] = 2
    values["gateway"]["autoscaling"]["enabled"] = False
    values["gateway"]["replicaCount"] = 2
    values["rateLimits"] = {"globalPerMinute": 0, "perIpPerMinute": 0, "perTenantPerMinute": 0,
                            "perRoutePerMinute": 0, "routes": {LIMITED_ROUTE: LIMIT}}
    return values


@pytest.fixture(scope="module")
def release(tmp_path_factory, postgres_url):
    name, database_url = fresh_database(postgres_url)
    values = production_like_values()
    documents = _render(values)
    # The existing Secrets the production values name (made by an operator before installing).
    stores = {
        values["database"]["existingSecret"]: {values["database"]["urlKey"]: database_url},
        values["redis"]["existingSecret"]: {values["redis"]["urlKey"]: REDIS_URL},
        values["nats"]["existingSecret"]: {values["nats"]["urlKey"]: NATS_URL},
        values["keys"]["existingSecret"]: {
            "key-encryption-key": base64.b64encode(secrets.token_bytes(32)).decode()},
        values["internalToken"]["existingSecret"]: {"internal-token": secrets.token_urlsafe(32)},
    }
    running = Release(documents, stores, tmp_path_factory.mktemp("helm-rendered"))
    try:
        # The pre-install hook: migrations and the first signing keys, before any pod starts.
        job = running.of_kind("Job")["mesh-migrate"]
        migrate = running.add_pod("mesh-migrate", "mesh-migrate", job["spec"]["template"])
        assert running.run_to_completion(migrate, 600) == 0, running.tail(migrate)
        running.plan()
        pods = [pod for pod in running.pods if pod.process is None]
        for pod in pods:
            running.start(pod)
        running.wait_ready(pods, 600)
        yield running
    finally:
        running.stop()
        drop_database(postgres_url, name)


def gateways(release: Release) -> list[str]:
    return [f"http://127.0.0.1:{pod.ports[8080]}" for pod in release.pods
            if pod.owner == "mesh-gateway" and pod.alive()]


def helm_test(release: Release, run: str) -> list[dict]:
    """`helm test`: the rendered test Pod, started like every other pod; its JSON lines."""
    manifest = release.of_kind("Pod")["mesh-smoke"]
    pod = release.add_pod(f"mesh-smoke-{run}", "mesh-smoke", manifest)
    code = release.run_to_completion(pod, 400)
    lines = [json.loads(line) for line in pod.log.read_text().splitlines()
             if line.startswith("{")]
    assert code == 0, release.tail(pod)
    return lines


def register(url: str) -> str:
    name = f"rendered-{uuid.uuid4().hex[:8]}"
    reply = httpx2.post(f"{url}/api/v1/auth/register", timeout=30, json={
        "tenant_name": name, "email": f"{name}@example.com", "password": "correct-horse-1"})
    assert reply.status_code == 200, reply.text
    return reply.json()["access_token"]


def test_every_deployment_runs_as_rendered_and_the_helm_test_smoke_flow_passes(release):
    deployments = release.of_kind("Deployment")
    for name, deployment in deployments.items():
        pods = [p for p in release.pods if p.owner == name]
        assert len(pods) == deployment["spec"]["replicas"] == 2 and all(p.alive() for p in pods)
    # The rendered manifests, as they were run: the services' argv is the image's entrypoint
    # with the Deployment's args; the secrets came from the Secrets, the rest from the ConfigMap.
    agents = next(p for p in release.pods if p.name == "mesh-agents-1")
    assert agents.argv[0].endswith("/agentmesh") and agents.argv[1:] == ["serve", "agents"]
    assert agents.env["AGENTMESH_NATS_URL"] == NATS_URL
    assert agents.env["AGENTMESH_REPLICA_ID"] == "mesh-agents-1"
    peers = dict(item.split("=") for item in agents.env["AGENTMESH_PEERS"].split(","))
    assert len(peers["live"].split("|")) == 2  # the headless Service: both live pods
    governance = next(p for p in release.pods if p.name == "mesh-governance-0")
    assert json.loads(governance.env["AGENTMESH_RATE_LIMIT_ROUTES"]) == {LIMITED_ROUTE: LIMIT}
    lines = helm_test(release, "before")
    assert [line["step"] for line in lines] == ["register", "create", "interact", "workflow",
                                                "passed"]
    assert lines[3]["outputs"] == {"n": 42, "answer": "You said: The number is 42"}


def _flow(client: httpx2.Client) -> str:
    """Three steps, queued: `b`'s projection is not bounded (a pure workflow would run in the
    call that starts it, and be seen as one event, mesh.workflows.inline)."""
    steps = [{"id": "a", "type": "STEP_TYPE_TRANSFORM", "transform": {"expression": "inputs.n"}},
             {"id": "b", "type": "STEP_TYPE_TRANSFORM", "depends_on": ["a"],
              "transform": {"expression": "[steps.a.output][*]"}},
             {"id": "c", "type": "STEP_TYPE_TRANSFORM", "depends_on": ["b"],
              "transform": {"expression": "steps.b.output[0]"}}]
    reply = client.post("/api/v1/workflows", json={"name": f"live-{uuid.uuid4().hex[:8]}",
                                                    "steps": steps,
                                                    "outputs": {"n": "steps.c.output"}})
    assert reply.status_code == 200, reply.text
    workflow = reply.json()["id"]
    assert client.post(f"/api/v1/workflows/{workflow}/activate", json={}).status_code == 200
    return workflow


def test_live_events_complete_on_one_websocket_with_two_live_replicas_on_nats(release):
    live = [p for p in release.pods if p.owner == "mesh-live" and p.alive()]
    assert len(live) == 2 and all(p.env["AGENTMESH_NATS_URL"] == NATS_URL for p in live)
    first, second = gateways(release)
    token = register(first)
    runs = 8

    async def scenario():
        headers = {"Authorization": f"Bearer {token}"}
        url = first.replace("http://", "ws://") + "/ws/executions"
        async with connect(url, additional_headers=headers) as ws:
            assert json.loads(await ws.recv())["type"] == "state"
            started = []
            # Started through both gateways, so both workflows replicas publish events.
            for index in range(runs):
                base = (first, second)[index % 2]
                with httpx2.Client(base_url=base, headers=headers, timeout=30) as client:
                    workflow = _flow(client)
                    reply = client.post(f"/api/v1/workflows/{workflow}/execute",
                                        json={"inputs": {"n": index}})
                    assert reply.status_code == 200, reply.text
                    started.append(reply.json()["id"])
            seen: dict[str, list[dict]] = {e: [] for e in started}
            done: set[str] = set()
            while done != set(started):
                try:
                    message = json.loads(await asyncio.wait_for(ws.recv(), 60))
                except TimeoutError:
                    with httpx2.Client(base_url=second, headers=headers, timeout=30) as client:
                        states = {e: client.get(f"/api/v1/workflows/executions/{e}").json()
                                  for e in set(started) - done}
                    raise AssertionError(f"no event for 60 s; not seen ending: {states}") from None
                if message["type"] != "execution.progress":
                    continue
                payload = message["payload"]
                seen.setdefault(payload["execution_id"], []).append(message)
                if payload["status"] in FINAL:
                    done.add(payload["execution_id"])
            return started, seen

    started, seen = asyncio.run(scenario())
    for index, execution in enumerate(started):
        events = seen[execution]
        assert events[-1]["payload"]["status"] == "EXECUTION_STATUS_COMPLETED", events[-1]
        ids = [e["payload"]["event_id"] for e in events]
        # Every event of the execution, in order, none missing: not half of them (one live
        # replica's share without NATS).
        assert ids == list(range(ids[0], ids[0] + len(ids))) and ids[0] <= 1, ids
        assert len(ids) >= 4  # running, and each of three steps
        seqs = [e["seq"] for e in events]
        assert seqs == sorted(seqs)
        with httpx2.Client(base_url=second, headers={"Authorization": f"Bearer {token}"},
                          timeout=30) as client:
            final = client.get(f"/api/v1/workflows/executions/{execution}").json()
        assert final["outputs"] == {"n": index}


def test_a_limit_of_n_per_minute_holds_across_two_gateway_replicas(release):
    urls = gateways(release)
    assert len(urls) == 2
    token = register(urls[0])
    window = 60
    if window - time.time() % window < 15:  # never straddle a window
        time.sleep(window - time.time() % window + 0.5)
    codes = []
    for index in range(3 * LIMIT):  # alternately through each gateway replica
        reply = httpx2.get(f"{urls[index % 2]}/api/v1/governance/rate-limits", timeout=30,
                          headers={"Authorization": f"Bearer {token}"})
        codes.append(reply.status_code)
        if reply.status_code == 429:
            assert reply.json()["error"] == "RATE_LIMIT_EXCEEDED", reply.text
    # N in all, not N per gateway: the count is governance's, in Redis.
    assert codes == [200] * LIMIT + [429] * (2 * LIMIT), codes
    other = httpx2.get(f"{urls[1]}/api/v1/governance/policies", timeout=30,
                      headers={"Authorization": f"Bearer {token}"})
    assert other.status_code == 200, other.text  # the limit is the route's


def test_the_smoke_flow_passes_after_losing_one_replica_of_every_service(release):
    killed = []
    for name in release.of_kind("Deployment"):
        pod = next(p for p in release.pods if p.owner == name and p.alive())
        release.kill(pod)
        killed.append(pod.name)
    assert len(killed) == 12  # eleven services and the gateway
    for name in release.of_kind("Deployment"):
        assert len([p for p in release.pods if p.owner == name and p.alive()]) == 1
    lines = helm_test(release, "after")
    assert lines[-1] == {"step": "passed"}
    assert lines[3]["outputs"] == {"n": 42, "answer": "You said: The number is 42"}
