"""The egress guard on its own: which addresses are refused, what the allow-list opens, and
its client: the check at connect time (DNS rebinding), redirects, timeouts, the size cap."""

from __future__ import annotations

import asyncio
import socket
import time

import httpx2
import pytest

from mesh.runtime.egress import EgressDenied, EgressPolicy, ResponseTooLarge
from mesh.runtime.errors import InvalidArgument
from tests.fakes.http_server import LocalHTTPServer


def _check(policy: EgressPolicy, url: str) -> str:
    """"" when allowed, else the refusal's range."""
    try:
        asyncio.run(policy.check_url(url))
    except EgressDenied as exc:
        return exc.details.get("range", exc.reason)
    return ""


@pytest.mark.parametrize("url, why", [
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://127.0.0.1:8080/", "loopback"),
    ("http://127.1/", "loopback"),
    ("http://localhost/", "loopback"),
    ("http://[::1]/", "loopback"),
    ("http://[::ffff:127.0.0.1]/", "loopback"),
    ("http://10.1.2.3/", "private"),
    ("http://192.168.0.1/", "private"),
    ("http://172.16.5.4/", "private"),
    ("http://100.64.0.1/", "non-global"),
    ("http://0.0.0.0/", "unspecified"),
    ("http://[fd00::1]/", "private"),
])
def test_internal_addresses_are_refused_by_default(url, why):
    assert _check(EgressPolicy.parse(""), url) == why


def test_global_addresses_pass():
    assert _check(EgressPolicy.parse(""), "https://8.8.8.8/") == ""


def test_the_allow_list_opens_hosts_domains_and_networks():
    policy = EgressPolicy.parse("127.0.0.1, 10.0.0.0/8, models.internal, .corp.example")
    assert _check(policy, "http://127.0.0.1:9/") == ""
    assert _check(policy, "http://127.0.0.2/") == "loopback"
    assert _check(policy, "http://10.9.8.7/") == ""
    assert _check(policy, "http://models.internal/v1") == ""
    assert _check(policy, "http://api.corp.example/") == ""
    assert _check(policy, "http://169.254.169.254/") == "link-local"


def test_unresolvable_hosts_and_other_schemes_are_refused():
    policy = EgressPolicy.parse("")
    assert _check(policy, "http://no-such-host.invalid/") == "EGRESS_UNRESOLVABLE"
    with pytest.raises(InvalidArgument):
        asyncio.run(policy.check_url("file:///etc/passwd"))


# ---- the client: the check at connect time ------------------------------------------------------

@pytest.fixture
def two_loopbacks():
    """Two listeners on one port: 127.0.0.1 (which the policies below allow) and 127.0.0.2
    (loopback too, refused)."""
    allowed = LocalHTTPServer()
    refused = LocalHTTPServer(port=allowed.port, host="127.0.0.2")
    yield allowed, refused
    allowed.close()
    refused.close()


def _rebinding_resolver(loop: asyncio.AbstractEventLoop, answers: list[str]):
    """`rebind.test` answers each address of `answers` in turn (the last one from then on):
    a DNS name with a zero TTL whose owner switches it between two lookups."""
    real = loop.getaddrinfo
    asked = []

    async def getaddrinfo(host, port, *args, **kwargs):
        if (host.decode() if isinstance(host, bytes) else host) != "rebind.test":
            return await real(host, port, *args, **kwargs)
        address = answers[min(len(asked), len(answers) - 1)]
        asked.append(address)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    loop.getaddrinfo = getaddrinfo
    return asked


def test_a_name_rebound_after_the_check_cannot_reach_the_refused_address(two_loopbacks):
    allowed, refused = two_loopbacks
    policy = EgressPolicy.parse("127.0.0.1")
    url = f"http://rebind.test:{allowed.port}/rebound"

    async def run():
        # Checked when saved (127.0.0.1: allowed), then rebound to 127.0.0.2 before the call.
        asked = _rebinding_resolver(asyncio.get_running_loop(), ["127.0.0.1", "127.0.0.2"])
        await policy.check_url(url)
        async with policy.client(timeout=2) as client:
            with pytest.raises(EgressDenied) as denied:
                await client.get(url)
        assert denied.value.reason == "EGRESS_DENIED"
        assert denied.value.details["address"] == "127.0.0.2"
        assert asked == ["127.0.0.1", "127.0.0.2"]

    asyncio.run(run())
    assert refused.requests == [] and allowed.requests == []


def test_the_connection_goes_to_the_address_that_was_checked(two_loopbacks):
    """One lookup per connection: the address checked is the address connected to, even when
    a second lookup would now answer a refused one."""
    allowed, refused = two_loopbacks
    policy = EgressPolicy.parse("127.0.0.1")

    async def run():
        asked = _rebinding_resolver(asyncio.get_running_loop(), ["127.0.0.1", "127.0.0.2"])
        async with policy.client(timeout=2) as client:
            reply = await client.get(f"http://rebind.test:{allowed.port}/checked")
        assert reply.status_code == 200 and asked == ["127.0.0.1"]

    asyncio.run(run())
    assert [r["path"] for r in allowed.requests] == ["/checked"]
    assert refused.requests == []


@pytest.mark.parametrize("target", ["http://127.0.0.2:{port}/inside", "http://169.254.169.254/",
                                    "http://10.0.0.1/"])
def test_a_redirect_to_a_refused_address_is_not_followed(two_loopbacks, target):
    allowed, refused = two_loopbacks
    policy = EgressPolicy.parse("127.0.0.1")
    to = target.format(port=allowed.port)

    async def run():
        async with policy.client(timeout=2) as client:
            with pytest.raises(EgressDenied):
                await client.get(f"{allowed.url}/redirect", params={"to": to})

    asyncio.run(run())
    assert [r["path"] for r in allowed.requests] == ["/redirect"]
    assert refused.requests == []


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/", "http://169.254.169.254/latest/meta-data/",
                                 "http://10.0.0.1/", "http://[::1]:9/", "http://0.0.0.0:9/"])
def test_the_client_refuses_internal_addresses_before_connecting(url):
    async def run():
        async with EgressPolicy.parse("").client(timeout=30) as client:
            started = time.monotonic()
            with pytest.raises(EgressDenied):
                await client.get(url)
            return time.monotonic() - started

    assert asyncio.run(run()) < 1  # refused, not waited for (10.0.0.1 would hang)


async def _serve(answer) -> tuple[asyncio.AbstractServer, str]:
    async def handle(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        try:
            await answer(writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"


def test_every_request_has_a_timeout_and_a_deadline():
    policy = EgressPolicy.parse("127.0.0.1")

    async def drip(writer):  # answers at once, then one byte every 0.1 s, forever
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        while True:
            writer.write(b"1\r\nx\r\n")
            await writer.drain()
            await asyncio.sleep(0.1)

    async def run():
        server, url = await _serve(drip)
        async with server, policy.client(timeout=0.3) as client:
            started = time.monotonic()
            with pytest.raises(httpx2.ReadTimeout):  # no request may ask for no timeout
                await client.get(url, timeout=None)
            return time.monotonic() - started

    assert asyncio.run(run()) < 2  # the deadline: twice the step timeout
    with pytest.raises(ValueError):
        policy.client(timeout=None)
    with pytest.raises(ValueError):
        policy.client(transport=httpx2.AsyncHTTPTransport())


def test_an_answer_over_the_cap_is_cut_off():
    policy = EgressPolicy.parse("127.0.0.1", max_response_bytes=10_000)

    async def endless(writer):  # no Content-Length: only counting can stop it
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        while True:
            writer.write(b"400\r\n" + b"x" * 1024 + b"\r\n")
            await writer.drain()

    async def run():
        server, url = await _serve(endless)
        async with server, policy.client(timeout=5) as client:
            with pytest.raises(ResponseTooLarge):
                await client.get(url)

    asyncio.run(run())
