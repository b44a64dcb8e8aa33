"""The egress guard on its own: which addresses are refused, what the allow-list opens."""

from __future__ import annotations

import asyncio

import pytest

from mesh.runtime.egress import EgressDenied, EgressPolicy
from mesh.runtime.errors import InvalidArgument


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
