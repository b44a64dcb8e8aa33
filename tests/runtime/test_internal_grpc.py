"""Internal gRPC as gRPC users expect it: TLS for listeners, channels and the gateway's upstreams
when configured (a CA made here with `cryptography`), and deadlines that propagate: a call made
while serving a call gets what is left of that call's deadline, not a fixed 10 s."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import subprocess
import time

import grpc
import httpx2 as httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mesh import contract
from mesh.gateway.config import GatewayOptions, build
from mesh.identity.service import DEFINITION as IDENTITY
from mesh.runtime import peers as peers_mod
from mesh.runtime.context import current_call
from mesh.runtime.peers import Peers
from mesh.runtime.settings import Settings
from tests.harness import ServiceHarness

NAME = "agentmesh-internal"  # the name in the services' certificate


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pem(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _certificate(subject: str, key, issuer_name: str, issuer_key, *, ca: bool):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=1))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName([
            x509.DNSName(NAME), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _authority(directory, name: str) -> dict[str, str]:
    """A CA and a certificate it signed for the services: {ca, cert, key} file paths."""
    directory.mkdir()
    ca_key, key = _key(), _key()
    ca = _certificate(name, ca_key, name, ca_key, ca=True)
    cert = _certificate(NAME, key, name, ca_key, ca=False)
    files = {"ca": directory / "ca.pem", "cert": directory / "cert.pem",
             "key": directory / "key.pem"}
    files["ca"].write_bytes(_pem(ca))
    files["cert"].write_bytes(_pem(cert))
    files["key"].write_bytes(_pem_key(key))
    return {k: str(v) for k, v in files.items()}


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    root = tmp_path_factory.mktemp("pki")
    return {"ours": _authority(root / "ours", "agentmesh test CA"),
            "other": _authority(root / "other", "someone else's CA")}


def _check(settings: Settings, port: int) -> int:
    """A health check of the service at `port` over the channel `Peers` makes."""
    async def run():
        peers = Peers(settings.model_copy(update={"peers": f"identity=127.0.0.1:{port}"}))
        try:
            stub = health_pb2_grpc.HealthStub(peers.channel("identity"))
            return (await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)).status
        finally:
            await peers.close()
    return asyncio.run(run())


def test_tls_listeners_channels_and_the_gateway_upstream(tmp_path, pki):
    ours, other = pki["ours"], pki["other"]
    tls = {"tls_cert_file": ours["cert"], "tls_key_file": ours["key"], "tls_ca_file": ours["ca"],
           "tls_server_name": NAME}
    with ServiceHarness(IDENTITY, tmp_path / "identity", **tls) as identity:
        port = identity.running.port
        # A channel checked against the CA: served
        assert _check(Settings(**tls), port) == health_pb2.HealthCheckResponse.SERVING
        # Plaintext, or a server whose CA is another: refused
        with pytest.raises(grpc.aio.AioRpcError) as plain:
            _check(Settings(), port)
        assert plain.value.code() == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(grpc.aio.AioRpcError) as stranger:
            _check(Settings(tls_ca_file=other["ca"], tls_server_name=NAME), port)
        assert stranger.value.code() == grpc.StatusCode.UNAVAILABLE

        # The gateway reaches the service over TLS: a public route through a real Envoy
        from mesh.supervisor import envoy_binary, free_port

        backends = {name: ("127.0.0.1", port) for name in contract.default().backends}
        listen = free_port()
        options = GatewayOptions.from_settings(Settings(**tls), backends, listen_port=listen)
        config = build(contract.default(), options)
        clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
        assert clusters["identity"]["transport_socket"]["typed_config"]["sni"] == NAME
        (tmp_path / "envoy.json").write_text(json.dumps(config))
        envoy = subprocess.Popen([envoy_binary(), "-c", str(tmp_path / "envoy.json"),
                                  "--disable-hot-restart", "--log-level", "error"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            reply = None
            for _ in range(150):
                try:
                    reply = httpx.get(f"http://127.0.0.1:{listen}/api/v1/auth/jwks")
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            assert reply is not None and reply.status_code == 200, reply and reply.text
            assert reply.json()["keys"]
        finally:
            envoy.terminate()
            envoy.wait(10)


def test_mutual_tls_refuses_a_channel_without_a_client_certificate(tmp_path, pki):
    ours = pki["ours"]
    tls = {"tls_cert_file": ours["cert"], "tls_key_file": ours["key"], "tls_ca_file": ours["ca"],
           "tls_server_name": NAME, "tls_client_auth": True}
    with ServiceHarness(IDENTITY, tmp_path / "identity", **tls) as identity:
        port = identity.running.port
        assert _check(Settings(**tls), port) == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.aio.AioRpcError) as anonymous:
            _check(Settings(tls_ca_file=ours["ca"], tls_server_name=NAME), port)
        assert anonymous.value.code() == grpc.StatusCode.UNAVAILABLE


def test_settings_refuse_half_a_tls_configuration():
    with pytest.raises(ValueError, match="go together"):
        Settings(tls_cert_file="cert.pem")
    with pytest.raises(ValueError, match="CLIENT_AUTH"):
        Settings(tls_client_auth=True)


# ---- deadlines ---------------------------------------------------------------------------------
class _Downstream(health_pb2_grpc.HealthServicer):
    """Records the time left of each call it serves."""

    def __init__(self) -> None:
        self.left: list[float | None] = []

    async def Check(self, request, context):  # noqa: N802
        self.left.append(context.time_remaining())
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)


class _Upstream(health_pb2_grpc.HealthServicer):
    """Serves a call by making one to the downstream service, through `Peers`."""

    def __init__(self, peers: Peers) -> None:
        self.peers = peers

    async def Check(self, request, context):  # noqa: N802
        current_call.set(context)  # as mesh.runtime.server does for every served call
        stub = health_pb2_grpc.HealthStub(self.peers.channel("downstream"))
        return await stub.Check(health_pb2.HealthCheckRequest())


def test_each_hop_gets_what_is_left_of_the_callers_deadline():
    async def run():
        downstream = _Downstream()
        low = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(downstream, low)
        low_port = low.add_insecure_port("127.0.0.1:0")
        peers = Peers(Settings(peers=f"downstream=127.0.0.1:{low_port}"))
        high = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(_Upstream(peers), high)
        high_port = high.add_insecure_port("127.0.0.1:0")
        await low.start()
        await high.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{high_port}") as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                await stub.Check(health_pb2.HealthCheckRequest(), timeout=2.5)
                await stub.Check(health_pb2.HealthCheckRequest(), timeout=60)
                await stub.Check(health_pb2.HealthCheckRequest())  # no deadline to inherit
                # Outside any served call (a background task): the default
                await health_pb2_grpc.HealthStub(peers.channel("downstream")).Check(
                    health_pb2.HealthCheckRequest())
        finally:
            await peers.close()
            await high.stop(None)
            await low.stop(None)
        return downstream.left

    short, long, none, background = asyncio.run(run())
    # (gRPC rounds a deadline up a little on the wire)
    assert 1.5 < short <= 3  # what was left of 2.5 s, not 10
    assert 50 < long <= 61  # longer than the old fixed 10 s, when the caller allows it
    default = peers_mod.DEFAULT_DEADLINE_SECONDS
    assert default - 2 < none <= default + 1 and default - 2 < background <= default + 1


def test_an_effect_rpc_without_a_deadline_gets_its_long_default():
    effect = next(r for r in contract.default().rpcs if r.effect)
    assert peers_mod.call_deadline(effect.grpc_path, None) == peers_mod.EFFECT_DEADLINE_SECONDS
    assert peers_mod.call_deadline(effect.grpc_path, 3.0) == 3.0
    assert peers_mod.call_deadline("/x.Y/Z", None) == peers_mod.DEFAULT_DEADLINE_SECONDS
