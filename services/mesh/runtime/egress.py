"""The egress guard: outbound HTTP from tools, MCP servers and model endpoints may not reach
internal addresses (SSRF).

Before every request — and again before every redirect hop — the URL's host is resolved and
each address it resolves to must be global: loopback (127.0.0.0/8, ::1), link-local
(169.254.0.0/16, the cloud metadata endpoint), private (10/8, 172.16/12, 192.168/16, fc00::/7),
shared, reserved, multicast and unspecified addresses are refused. The operator may allow some
anyway with `AGENTMESH_EGRESS_ALLOW`: a comma-separated list of host names (exact, or `.example`
for a domain and its subdomains) and IP networks (`127.0.0.1`, `10.0.0.0/8`); it is empty by
default.

    policy = EgressPolicy.from_settings(runtime.settings)
    async with policy.client(timeout=10) as client:        # httpx, checked on every hop
        response = await client.get(url)
        body = await read_capped(response, policy.max_response_bytes)

`policy.check_url(url)` is the check alone, for clients that are not httpx (the MCP SDK's
httpx2 client gets the same hook through `policy.hook`).

Known limit: the address is resolved by the guard and again by the HTTP client, so a DNS name
whose answer changes between the two (DNS rebinding with a zero TTL) is not caught.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

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

    async def check_url(self, url: str) -> None:
        """Raises EgressDenied unless every address the URL's host resolves to is allowed."""
        parts = urlsplit(str(url))
        if parts.scheme not in ("http", "https"):
            raise InvalidArgument(f"only http and https URLs may be called, not {url!r}",
                                  reason="EGRESS_SCHEME", details={"url": str(url)})
        host = parts.hostname or ""
        if not host:
            raise InvalidArgument(f"URL {url!r} has no host", reason="EGRESS_NO_HOST")
        if self.host_allowed(host):
            return
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:  # "host:99999", "host:x"
            raise InvalidArgument(f"URL {url!r} has an invalid port",
                                  reason="EGRESS_BAD_PORT") from None
        for address in await self.resolve(host, port):
            why = self.address_allowed(address)
            if why:
                shown = host if str(address) == host.strip("[]") else f"{host} ({address})"
                raise EgressDenied(
                    f"outbound request to {shown} refused: {why} address; allow it with "
                    f"AGENTMESH_EGRESS_ALLOW if it is meant to be reachable",
                    reason="EGRESS_DENIED",
                    details={"host": host, "address": str(address), "range": why})

    async def hook(self, request) -> None:
        """An httpx / httpx2 `request` event hook: runs before the first request and before
        every redirect hop."""
        await self.check_url(str(request.url))

    def client(self, *, timeout: float = 30.0, follow_redirects: bool = True,
               **kwargs) -> httpx.AsyncClient:
        """An httpx client whose every request and redirect hop is checked."""
        return httpx.AsyncClient(timeout=timeout, follow_redirects=follow_redirects,
                                 max_redirects=self.max_redirects, trust_env=False,
                                 event_hooks={"request": [self.hook]}, **kwargs)


async def read_capped(response: httpx.Response, limit: int) -> bytes:
    """The body of a streamed response, refusing more than `limit` bytes."""
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ResponseTooLarge(f"the answer is {declared} bytes; the limit is {limit}",
                               reason="RESPONSE_TOO_LARGE", details={"limit": limit})
    chunks, size = [], 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise ResponseTooLarge(f"the answer exceeds the limit of {limit} bytes",
                                   reason="RESPONSE_TOO_LARGE", details={"limit": limit})
        chunks.append(chunk)
    return b"".join(chunks)
