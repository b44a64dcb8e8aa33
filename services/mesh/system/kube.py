"""`POST /system/restart/{service}` in Kubernetes: a rollout restart of the service's Deployment
through the Kubernetes API, what `kubectl rollout restart deployment/<name>` does (a strategic
merge patch setting the pod template's `kubectl.kubernetes.io/restartedAt` annotation, so the
Deployment replaces its pods one by one under its rollout strategy and PodDisruptionBudget).

The Helm chart turns it on (`restart.enabled`): the system pod then runs under a
ServiceAccount of its own whose Role may only `get` and `patch` the release's service
Deployments, and gets AGENTMESH_KUBERNETES_RESTART=1, its namespace and the Deployments' name
prefix (`<fullname>-`). Without that, a restart in a pod answers 501 saying what to enable;
a refusal by the API (403: the Role is missing or narrower) is a 501 that quotes the API.

Two small HTTP calls with the pod's service-account token (mounted by the kubelet), no client
library, as `agentmesh keys bootstrap-secret` does (mesh/keysecret.py). Not the egress guard: the
API server is the platform's own infrastructure at an internal address the guard refuses by
design, and no tenant input reaches the URL (the service name is checked against the catalog
first).
"""

from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
PATCH = "application/strategic-merge-patch+json"


class KubernetesSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AGENTMESH_", extra="ignore")

    # Restart services by a rollout restart of their Deployments (the chart sets these).
    kubernetes_restart: bool = False
    kubernetes_namespace: str = ""
    # Deployment of service <s> is <prefix><s> (the chart: "<fullname>-").
    kubernetes_deployment_prefix: str = ""
    # The API server; empty: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT.
    kubernetes_api: str = ""
    # The service account's files (token, ca.crt, namespace).
    kubernetes_service_account_dir: str = str(SERVICE_ACCOUNT)


class NotPermitted(Exception):
    """A rollout restart cannot be done from here; the message says why."""


class Unreachable(Exception):
    """The API server did not answer."""


def in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


def _api(settings: KubernetesSettings) -> str:
    if settings.kubernetes_api:
        return settings.kubernetes_api.rstrip("/")
    host = os.environ.get("KUBERNETES_SERVICE_HOST", "")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if not host:
        raise NotPermitted("the Kubernetes API is unknown (KUBERNETES_SERVICE_HOST unset)")
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


def rollout_restart(service: str, reason: str = "",
                    settings: KubernetesSettings | None = None,
                    now: datetime | None = None) -> str:
    """Patches Deployment `<prefix><service>` as `kubectl rollout restart` does; returns its
    name. NotPermitted when it is not configured or the API refuses."""
    settings = settings or KubernetesSettings()
    if not settings.kubernetes_restart:
        raise NotPermitted(
            "restarting a service in Kubernetes is not enabled for this release: install the "
            "chart with restart.enabled=true (a Role that may patch the release's "
            "Deployments), or run: kubectl rollout restart deployment/<release>-" + service)
    account = Path(settings.kubernetes_service_account_dir)
    token_file = account / "token"
    if not token_file.exists():
        raise NotPermitted(f"no service-account token at {token_file}: the system pod needs "
                           "automountServiceAccountToken (restart.enabled in the chart)")
    namespace = settings.kubernetes_namespace or (account / "namespace").read_text().strip()
    name = f"{settings.kubernetes_deployment_prefix}{service}"
    api = _api(settings)
    ca = account / "ca.crt"
    context = (ssl.create_default_context(cafile=str(ca) if ca.exists() else None)
               if api.startswith("https") else None)
    at = (now or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")
    annotations = {"kubectl.kubernetes.io/restartedAt": at}
    if reason:
        annotations["agentmesh.dev/restart-reason"] = reason[:256]
    body = {"spec": {"template": {"metadata": {"annotations": annotations}}}}
    request = urllib.request.Request(
        f"{api}/apis/apps/v1/namespaces/{namespace}/deployments/{name}", method="PATCH",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token_file.read_text().strip()}",
                 "Content-Type": PATCH, "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as reply:
            reply.read()
    except urllib.error.HTTPError as error:
        try:
            said = json.loads(error.read() or b"{}").get("message", "")
        except ValueError:
            said = ""
        raise NotPermitted(f"the Kubernetes API refused to restart deployment/{name} "
                           f"({error.code}): {said or error.reason}") from None
    except (urllib.error.URLError, OSError) as error:
        raise Unreachable(f"the Kubernetes API at {api} is unreachable: {error}") from None
    return name
