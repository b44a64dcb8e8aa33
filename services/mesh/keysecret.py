"""`agentmesh keys bootstrap-secret`: makes the key-encryption key (KEK), and the platform's
internal token, in Kubernetes Secrets, once. The Helm chart runs it as a pre-install/pre-upgrade
hook Job, so the values are made inside the cluster and never pass through Helm values, the
release record or a CI log.

The KEK Secret (`<release>-keys` unless the chart is given an existing one) holds
`key-encryption-key`: 32 random bytes, base64 (`AGENTMESH_SECRETS_KEK`), the key masterdata wraps
stored secrets with. The token Secret (`<release>-internal`) holds `internal-token`
(`AGENTMESH_INTERNAL_TOKEN`, mesh.runtime.internal), what the services present to the span
receiver. An existing Secret is never touched: re-running the Job (every upgrade) is a no-op,
and the Secrets are not owned by the release, so `helm uninstall` leaves them (data encrypted
with the KEK must stay readable).

Talks to the Kubernetes API with the pod's service account (token and CA mounted by the kubelet);
two calls, so no client library: GET the Secret, POST it when it is missing (409 means another
run made it first, which is fine).
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import urllib.error
import urllib.request
from pathlib import Path

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
KEK_KEY = "key-encryption-key"
INTERNAL_TOKEN_KEY = "internal-token"


def _in_cluster_api() -> str:
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if not host:
        raise SystemExit("not in a Kubernetes pod (KUBERNETES_SERVICE_HOST unset); pass --api")
    if ":" in host:
        host = f"[{host}]"
    return f"https://{host}:{port}"


def new_key() -> str:
    """32 random bytes, base64: the form AGENTMESH_SECRETS_KEK takes (mesh/masterdata/keys.py)."""
    import secrets

    return base64.b64encode(secrets.token_bytes(32)).decode()


def new_internal_token() -> str:
    import secrets

    return secrets.token_urlsafe(32)


def bootstrap(name: str, namespace: str | None = None, api: str | None = None,
              token: str | None = None, ca_file: str | None = None, key: str = KEK_KEY,
              make=new_key, component: str = "keys") -> bool:
    """Creates Secret `name` holding `key` (a new KEK, or what `make` returns) unless it
    exists. True when it was created."""
    api = (api or _in_cluster_api()).rstrip("/")
    if token is None and (SERVICE_ACCOUNT / "token").exists():
        token = (SERVICE_ACCOUNT / "token").read_text().strip()
    if namespace is None:
        namespace = (SERVICE_ACCOUNT / "namespace").read_text().strip()
    if ca_file is None and (SERVICE_ACCOUNT / "ca.crt").exists():
        ca_file = str(SERVICE_ACCOUNT / "ca.crt")
    context = ssl.create_default_context(cafile=ca_file) if api.startswith("https") else None
    headers = {"Accept": "application/json", "Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"

    def call(method: str, path: str, body: dict | None = None) -> int:
        request = urllib.request.Request(api + path, method=method, headers=headers,
                                         data=json.dumps(body).encode() if body else None)
        try:
            with urllib.request.urlopen(request, context=context, timeout=30) as reply:
                return reply.status
        except urllib.error.HTTPError as error:
            if error.code in (404, 409):
                return error.code
            raise SystemExit(f"{method} {path}: HTTP {error.code}: {error.read()[:300]!r}")

    path = f"/api/v1/namespaces/{namespace}/secrets"
    if call("GET", f"{path}/{name}") == 200:
        return False
    secret = {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "agentmesh",
                                              "app.kubernetes.io/component": component}},
        "data": {key: base64.b64encode(make().encode()).decode()},
    }
    return call("POST", path, secret) != 409
