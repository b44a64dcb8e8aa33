"""`POST /system/restart/{service}` when no supervisor runs the platform but Kubernetes does: a
rollout restart of the service's Deployment through the Kubernetes API, with the pod's
service-account token, against a small real HTTP server speaking the API's PATCH of a
Deployment; a refusal by the API, or a release without the restart RBAC, is a 501 that says why."""

from __future__ import annotations

import json
import threading
from contextlib import closing
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import pytest

from agentmesh.system.v1 import system_pb2 as pb
from agentmesh.system.v1 import system_pb2_grpc as pb_grpc
from mesh.system.service import DEFINITION
from tests.harness import Identity, ServiceHarness, error_reason

ADMIN = Identity()
TOKEN = "sa-token-of-the-system-pod"
FORBIDDEN = "mesh-tools"  # the fake API refuses this one, as it would without the Role


class FakeKubernetesAPI:
    """PATCH /apis/apps/v1/namespaces/<ns>/deployments/<name>, as the API server answers it."""

    def __init__(self) -> None:
        owner = self
        self.patches: list[dict] = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _answer(self, status: int, body: dict) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_PATCH(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                parts = self.path.strip("/").split("/")
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    return self._answer(401, {"kind": "Status", "message": "Unauthorized"})
                if parts[:4] != ["apis", "apps", "v1", "namespaces"] or parts[5] != "deployments":
                    return self._answer(404, {"kind": "Status", "message": "not found"})
                namespace, name = parts[4], parts[6]
                if self.headers["Content-Type"] != "application/strategic-merge-patch+json":
                    return self._answer(415, {"kind": "Status", "message": "bad patch type"})
                if name == FORBIDDEN:
                    return self._answer(403, {"kind": "Status", "code": 403, "message": (
                        f'deployments.apps "{name}" is forbidden: User "system:serviceaccount:'
                        f'{namespace}:mesh-system" cannot patch resource "deployments" in API '
                        f'group "apps" in the namespace "{namespace}"')})
                owner.patches.append({"namespace": namespace, "name": name, "body": body})
                return self._answer(200, {"kind": "Deployment",
                                          "metadata": {"name": name, "namespace": namespace}})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def api():
    with closing(FakeKubernetesAPI()) as server:
        yield server


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    with ServiceHarness(DEFINITION, tmp_path_factory.mktemp("system-k8s"),
                        secrets_kek="c2VjcmV0", database_url="") as harness:
        yield harness.stub(pb_grpc.SystemServiceStub)


@pytest.fixture
def in_cluster(monkeypatch, tmp_path, api):
    """What the chart gives the system pod with restart.enabled."""
    (tmp_path / "token").write_text(TOKEN + "\n")
    (tmp_path / "namespace").write_text("agentmesh\n")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("AGENTMESH_KUBERNETES_RESTART", "1")
    monkeypatch.setenv("AGENTMESH_KUBERNETES_DEPLOYMENT_PREFIX", "mesh-")
    monkeypatch.setenv("AGENTMESH_KUBERNETES_API", api.url)
    monkeypatch.setenv("AGENTMESH_KUBERNETES_SERVICE_ACCOUNT_DIR", str(tmp_path))


def test_a_restart_is_a_rollout_restart_of_the_deployment(system, api, in_cluster):
    answer = system.RestartService(pb.RestartServiceRequest(service="agents", reason="new key"),
                                   metadata=ADMIN.metadata())
    assert answer.status == "restarting"
    assert answer.message.startswith("deployment/mesh-agents is restarting")
    (patch,) = [p for p in api.patches if p["name"] == "mesh-agents"]
    assert patch["namespace"] == "agentmesh"
    annotations = patch["body"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["kubectl.kubernetes.io/restartedAt"].endswith("Z")
    assert annotations["agentmesh.dev/restart-reason"] == "new key"
    # Unknown services never reach the API.
    with pytest.raises(grpc.RpcError) as unknown:
        system.RestartService(pb.RestartServiceRequest(service="nope"), metadata=ADMIN.metadata())
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    assert [p["name"] for p in api.patches] == ["mesh-agents"]


def test_a_refusal_by_the_api_is_a_501_quoting_it(system, api, in_cluster):
    with pytest.raises(grpc.RpcError) as refused:
        system.RestartService(pb.RestartServiceRequest(service="tools"),
                              metadata=ADMIN.metadata())
    assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert error_reason(refused.value) == "RESTART_NOT_PERMITTED"
    assert "refused to restart deployment/mesh-tools (403)" in refused.value.details()
    assert "cannot patch resource" in refused.value.details()


def test_without_the_restart_rbac_a_pod_answers_501_saying_what_to_enable(system, monkeypatch):
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.delenv("AGENTMESH_KUBERNETES_RESTART", raising=False)
    with pytest.raises(grpc.RpcError) as off:
        system.RestartService(pb.RestartServiceRequest(service="agents"),
                              metadata=ADMIN.metadata())
    assert off.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "restart.enabled=true" in off.value.details()
    assert "kubectl rollout restart deployment/<release>-agents" in off.value.details()


def test_outside_kubernetes_without_a_supervisor_nothing_changes(system, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("AGENTMESH_KUBERNETES_RESTART", raising=False)
    with pytest.raises(grpc.RpcError) as none:
        system.RestartService(pb.RestartServiceRequest(service="agents"),
                              metadata=ADMIN.metadata())
    assert error_reason(none.value) == "NO_SUPERVISOR"
