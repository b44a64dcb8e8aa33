"""The egress guard: the one HTTP client for every request the platform sends out on a tenant's
behalf (tools, MCP servers, model endpoints, API connections, imports by URL, webhooks, alert
notifications, workflow HTTP steps), so that none of them reaches an internal address (SSRF).

The check runs inside the connect step: the host is resolved once, every address it resolves to
must be global, and the connection is made to one of those checked addresses (TLS still uses the
host name, for SNI and the certificate). There is no second resolution between check and
connect, so a DNS name whose answer changes (DNS rebinding with a zero TTL) cannot slip an
internal address in. Each redirect hop to another origin is a new connection and is checked the
same way. Refused: loopback (127.0.0.0/8, ::1), link-local (169.254.0.0/16, the cloud metadata
endpoint), private (10/8, 172.16/12, 192.168/16, fc00::/7), shared, reserved, multicast and
unspecified addresses, and Unix sockets. The operator may allow some anyway with
`AGENTMESH_EGRESS_ALLOW`: a comma-separated list of host names (exact, or `.example` for a
domain and its subdomains) and IP networks (`127.0.0.1`, `10.0.0.0/8`); it is empty by default.

Every request also has a timeout on each step (connect, each read, each write; never none), a
deadline for the whole exchange, body included (twice the step timeout), and a cap on the
answer's size; no proxy from the environment is used.

    policy = EgressPolicy.from_settings(runtime.settings)
    async with policy.client(timeout=10) as client:        # an httpx2.AsyncClient
        response = await client.get(url)                   # EgressDenied (403) when refused

The client is httpx2's, which the openai and mcp SDKs take as their `http_client`: every
outbound request of the product goes through this one stack. `policy.check_url(url)` is the
same check alone, for a clear 403 when a URL is saved (a webhook, an alert channel); the
connect-time check still applies when the URL is called. tests/runtime/test_egress_only.py fails
the build when code under `services/` makes an HTTP client any other way.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
import ssl
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpcore2
import httpx2

from mesh.runtime.errors import InvalidArgument, PermissionDenied
from mesh.runtime.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_MAX_RESPONSE_BYTES = 2 * 1024 * 1024
DEFAULT_MAX_REDIRECTS = 5


class EgressDenied(PermissionDenied):
    """An outbound request aimed at an address the guard refuses (403, EGRESS_DENIED)."""


class ResponseTooLarge(PermissionDenied):
    """An answer larger than the cap."""


def _why_internal(address: IPAddress) -> str:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for attribute, label in (("is_unspecified", "unspecified"), ("is_loopback", "loopback"),
                             ("is_link_local", "link-local"), ("is_private", "private"),
                             ("is_multicast", "multicast"), ("is_reserved", "reserved")):
        if getattr(address, attribute):
            return label
    return "" if address.is_global else "non-global"


def _address(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """One verifying context for every client (loading the CA store costs milliseconds)."""
    return httpx2.create_ssl_context(trust_env=False)


@dataclass(frozen=True)
class EgressPolicy:
    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    max_redirects: int = DEFAULT_MAX_REDIRECTS

    @classmethod
    def parse(cls, text: str, **kwargs) -> "EgressPolicy":
        hosts, networks = set(), []
        for item in filter(None, (part.strip() for part in (text or "").split(","))):
            try:
                networks.append(ipaddress.ip_network(item.strip("[]"), strict=False))
            except ValueError:
                hosts.add(item.lower().rstrip("."))
        return cls(frozenset(hosts), tuple(networks), **kwargs)

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs) -> "EgressPolicy":
        return cls.parse(settings.egress_allow, **kwargs)

    # ---- the check ----------------------------------------------------------------------------
    def host_allowed(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        return host in self.hosts or any(
            entry.startswith(".") and (host.endswith(entry) or host == entry[1:])
            for entry in self.hosts)

    def address_allowed(self, address: IPAddress) -> str:
        """"" when allowed, else why not ("loopback", "private", ...)."""
        why = _why_internal(address)
        if not why:
            return ""
        mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
        if any(address in net or (mapped is not None and mapped in net) for net in self.networks):
            return ""
        return why

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        literal = _address(host)
        if literal is not None:
            return [literal]
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise EgressDenied(f"cannot resolve host {host!r}: {exc.strerror or exc}",
                               reason="EGRESS_UNRESOLVABLE", details={"host": host}) from None
        except UnicodeError:  # not encodable as IDNA ("\x83" in a label, an empty label)
            raise InvalidArgument(f"host {host!r} is not a valid host name",
                                  reason="EGRESS_BAD_HOST", details={"host": host}) from None
        return list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%", 1)[0])
                                  for info in infos))

    async def allowed_addresses(self, host: str, port: int) -> list[str]:
        """Where a connection to host:port may go: the host itself when the allow-list names
        it, else every address it resolves to, each checked. Raises EgressDenied when any
        address is refused (a name that also points inside is refused as a whole)."""
        if self.host_allowed(host):
            return [host]
        addresses = await self.resolve(host, port)
        for address in addresses:
            why = self.address_allowed(address)
            if why:
                shown = host if str(address) == host.strip("[]") else f"{host} ({address})"
                raise EgressDenied(
                    f"outbound request to {shown} refused: {why} address; allow it with "
                    f"AGENTMESH_EGRESS_ALLOW if it is meant to be reachable",
                    reason="EGRESS_DENIED",
                    details={"host": host, "address": str(address), "range": why})
        return [str(address) for address in addresses]

    async def check_url(self, url: str) -> None:
        """Raises EgressDenied unless every address the URL's host resolves to is allowed (the
        pre-check when a URL is saved; the client checks again when it connects)."""
        parts = urlsplit(str(url))
        if parts.scheme not in ("http", "https"):
            raise InvalidArgument(f"only http and https URLs may be called, not {url!r}",
                                  reason="EGRESS_SCHEME", details={"url": str(url)})
        host = parts.hostname or ""
        if not host:
            raise InvalidArgument(f"URL {url!r} has no host", reason="EGRESS_NO_HOST")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:  # "host:99999", "host:x"
            raise InvalidArgument(f"URL {url!r} has an invalid port",
                                  reason="EGRESS_BAD_PORT") from None
        await self.allowed_addresses(host, port)

    # ---- the client ---------------------------------------------------------------------------
    def client(self, *, timeout: float = 30.0, follow_redirects: bool = True,
               max_response_bytes: int | None = None, **kwargs: Any) -> httpx2.AsyncClient:
        """An httpx2 client whose every connection is checked. `timeout` bounds each step of
        a request (connect, each read, each write; a request may pass its own), and the whole
        exchange, body included, must end within twice that; answers over
        `max_response_bytes` (default the policy's) fail with ResponseTooLarge."""
        if not timeout or timeout <= 0:
            raise ValueError("an outbound request needs a timeout")
        if {"transport", "mounts", "proxy"} & set(kwargs):
            raise ValueError("the guarded client chooses its own transport")
        transport = GuardedTransport(
            self, timeout=timeout, max_response_bytes=max_response_bytes or self.max_response_bytes)
        return httpx2.AsyncClient(timeout=timeout, follow_redirects=follow_redirects,
                                  max_redirects=self.max_redirects, trust_env=False,
                                  transport=transport, **kwargs)


class GuardedNetworkBackend(httpcore2.AsyncNetworkBackend):
    """httpcore2's network backend with the check inside `connect_tcp`: resolve once, check
    every address, connect to a checked one. TLS is started by the caller on the returned
    stream with the request's host name."""

    def __init__(self, policy: EgressPolicy,
                 inner: httpcore2.AsyncNetworkBackend | None = None) -> None:
        self.policy = policy
        self.inner = inner or httpcore2.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None
                          ) -> httpcore2.AsyncNetworkStream:
        try:
            addresses = await asyncio.wait_for(self.policy.allowed_addresses(host, port),
                                               timeout)
        except TimeoutError:
            raise httpcore2.ConnectTimeout(f"resolving {host!r} took longer than {timeout} s"
                                           ) from None
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self.inner.connect_tcp(address, port, timeout=timeout,
                                                    local_address=local_address,
                                                    socket_options=socket_options)
            except (httpcore2.ConnectError, httpcore2.ConnectTimeout) as exc:
                failure = exc
        raise failure or httpcore2.ConnectError(f"{host!r} resolved to no address")

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None
                                  ) -> httpcore2.AsyncNetworkStream:
        raise EgressDenied("outbound requests may not use a Unix socket",
                           reason="EGRESS_DENIED", details={"range": "unix socket"})

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class GuardedTransport(httpx2.AsyncHTTPTransport):
    """httpx2's transport over a connection pool with the guarded backend; every request gets
    a timeout on each step (the client's where the request sets none), a deadline of twice the
    longest of them for the whole exchange, and a capped answer."""

    def __init__(self, policy: EgressPolicy, *, timeout: float, max_response_bytes: int) -> None:
        # Not super().__init__(): that builds a pool over the unguarded backend (and another
        # SSL context); this pool is the only one, so nothing connects around the check.
        self._pool = httpcore2.AsyncConnectionPool(
            ssl_context=_ssl_context(), max_connections=100, max_keepalive_connections=20,
            keepalive_expiry=5.0, network_backend=GuardedNetworkBackend(policy))  # httpx's limits
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        given = request.extensions.get("timeout") or {}
        steps = {step: given.get(step) if given.get(step) is not None else self.timeout
                 for step in ("connect", "read", "write", "pool")}
        request.extensions["timeout"] = steps
        deadline = 2 * max(steps.values())
        ends_at = time.monotonic() + deadline
        try:
            with anyio.fail_after(deadline):
                response = await super().handle_async_request(request)
        except TimeoutError:
            raise httpx2.ReadTimeout(f"no answer within {deadline:g} s",
                                     request=request) from None
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_response_bytes:
            await response.aclose()
            raise _too_large(self.max_response_bytes, declared)
        response.stream = _BoundedStream(response.stream, request, ends_at,
                                         self.max_response_bytes)
        return response


def _too_large(limit: int, declared: str = "") -> ResponseTooLarge:
    what = f"the answer is {declared} bytes" if declared else "the answer exceeds the limit"
    return ResponseTooLarge(f"{what}; the limit is {limit} bytes", reason="RESPONSE_TOO_LARGE",
                            details={"limit": limit})


class _BoundedStream(httpx2.AsyncByteStream):
    """An answer's body, cut off at the request's deadline and at the size cap."""

    def __init__(self, inner: httpx2.AsyncByteStream, request: httpx2.Request, ends_at: float,
                 limit: int) -> None:
        self.inner, self.request, self.ends_at, self.limit = inner, request, ends_at, limit

    async def __aiter__(self) -> AsyncIterator[bytes]:
        chunks = self.inner.__aiter__()
        size = 0
        while True:
            try:
                with anyio.fail_after(max(0.0, self.ends_at - time.monotonic())):
                    chunk = await chunks.__anext__()
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise httpx2.ReadTimeout("the answer did not end before the deadline",
                                         request=self.request) from None
            size += len(chunk)
            if size > self.limit:
                raise _too_large(self.limit)
            yield chunk

    async def aclose(self) -> None:
        await self.inner.aclose()


async def read_capped(response: httpx2.Response, limit: int) -> bytes:
    """The body of a streamed response, refusing more than `limit` bytes (a cap below the
    client's own, for callers that want less)."""
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit, declared)
    chunks, size = [], 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)
