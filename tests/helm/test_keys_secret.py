"""`agentmesh keys bootstrap-secret` (the chart's keys hook Job) against a small real HTTP
server that speaks the two calls of the Kubernetes Secrets API it uses."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer



class _SecretsApi(BaseHTTPRequestHandler):
    secrets: dict[str, dict] = {}
    calls: list[tuple[str, str, str]] = []

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802
        self.calls.append(("GET", self.path, self.headers.get("Authorization", "")))
        name = self.path.rsplit("/", 1)[1]
        if name in self.secrets:
            return self._answer(200, self.secrets[name])
        return self._answer(404, {"kind": "Status", "reason": "NotFound", "code": 404})

    def do_POST(self):  # noqa: N802
        self.calls.append(("POST", self.path, self.headers.get("Authorization", "")))
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert self.path == "/api/v1/namespaces/mesh/secrets"
        if body["metadata"]["name"] in self.secrets:
            return self._answer(409, {"kind": "Status", "reason": "AlreadyExists", "code": 409})
        self.secrets[body["metadata"]["name"]] = body
        return self._answer(201, body)

    def log_message(self, *args):
        pass


def _run(url: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mesh.cli", "keys", "bootstrap-secret",
                           "--secret", "am-keys", "--namespace", "mesh", "--api", url],
                          capture_output=True, text=True, check=True)


def test_bootstrap_makes_the_key_once_and_never_replaces_it():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SecretsApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        first = _run(url)
        assert "created" in first.stdout
        secret = _SecretsApi.secrets["am-keys"]
        key = base64.b64decode(secret["data"]["key-encryption-key"])
        assert len(base64.b64decode(key, validate=True)) == 32  # what AGENTMESH_SECRETS_KEK takes
        second = _run(url)
        assert "exists; left as it is" in second.stdout
        assert base64.b64decode(_SecretsApi.secrets["am-keys"]["data"]["key-encryption-key"]) == key
        assert [c[0] for c in _SecretsApi.calls] == ["GET", "POST", "GET"]
    finally:
        server.shutdown()


def test_bootstrap_makes_the_internal_token_once_beside_the_key():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SecretsApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"

    def run() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "mesh.cli", "keys", "bootstrap-secret",
                               "--internal-token-secret", "am-internal", "--namespace", "mesh",
                               "--api", url], capture_output=True, text=True, check=True)

    try:
        assert "created with a new internal token" in run().stdout
        secret = _SecretsApi.secrets["am-internal"]
        token = base64.b64decode(secret["data"]["internal-token"]).decode()
        assert len(token) >= 40 and secret["metadata"]["labels"][
            "app.kubernetes.io/component"] == "internal"
        assert "exists; left as it is" in run().stdout
        assert base64.b64decode(_SecretsApi.secrets["am-internal"]["data"][
            "internal-token"]).decode() == token
    finally:
        server.shutdown()
