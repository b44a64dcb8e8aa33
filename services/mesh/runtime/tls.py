"""TLS for the platform's internal gRPC: the services' listeners and their channels to each
other (mesh.runtime.peers), off unless configured. Plaintext is fine on one machine
(`agentmesh up` on 127.0.0.1); in production, between hosts or pods, set:

    AGENTMESH_TLS_CERT_FILE / AGENTMESH_TLS_KEY_FILE   the listener's certificate chain and key
                                                       (PEM): the service serves TLS only
    AGENTMESH_TLS_CA_FILE                              the CA (PEM) that signed the services'
                                                       certificates: channels are TLS, checked
                                                       against it (and present the cert/key
                                                       above as a client certificate)
    AGENTMESH_TLS_CLIENT_AUTH=true                     listeners also require a client
                                                       certificate signed by that CA (mutual TLS)
    AGENTMESH_TLS_SERVER_NAME                          the name the services' certificates carry,
                                                       when it is not the host dialled (one
                                                       certificate for every service)

The gateway's upstream clusters use the same files (mesh.gateway.clusters). docs/deployment.md
has the set-up, the Helm chart's values and a way to make the certificates.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Sequence

import grpc

from mesh.runtime.settings import Settings


@functools.cache
def _read(path: str) -> bytes:
    return Path(path).read_bytes()


def enabled(settings: Settings) -> bool:
    """Whether this process serves TLS (it has a certificate and key)."""
    return bool(settings.tls_cert_file and settings.tls_key_file)


def server_credentials(settings: Settings) -> grpc.ServerCredentials:
    ca = _read(settings.tls_ca_file) if settings.tls_client_auth else None
    return grpc.ssl_server_credentials(
        [(_read(settings.tls_key_file), _read(settings.tls_cert_file))],
        root_certificates=ca, require_client_auth=settings.tls_client_auth)


def add_port(server: grpc.aio.Server, settings: Settings, address: str) -> int:
    """Binds the listener at `address`: TLS with the configured certificate, or plaintext."""
    if enabled(settings):
        return server.add_secure_port(address, server_credentials(settings))
    return server.add_insecure_port(address)


def channel_credentials(settings: Settings) -> grpc.ChannelCredentials:
    client = enabled(settings)
    return grpc.ssl_channel_credentials(
        root_certificates=_read(settings.tls_ca_file),
        private_key=_read(settings.tls_key_file) if client else None,
        certificate_chain=_read(settings.tls_cert_file) if client else None)


def channel(settings: Settings, target: str, *, options: Sequence[tuple[str, Any]] = (),
            interceptors: Sequence[Any] | None = None) -> grpc.aio.Channel:
    """A channel to another service: TLS checked against the CA when one is set."""
    if not settings.tls_ca_file:
        return grpc.aio.insecure_channel(target, options=list(options), interceptors=interceptors)
    options = list(options)
    if settings.tls_server_name:
        options.append(("grpc.ssl_target_name_override", settings.tls_server_name))
    return grpc.aio.secure_channel(target, channel_credentials(settings), options=options,
                                   interceptors=interceptors)
