"""Unit tests of issue 7's pieces, without a running mesh: the gateway's rate-limit and error
config, the malformed-body field finder, PUT semantics, the revocation check, login throttling."""

from __future__ import annotations

import json
import time
import pytest
from google.protobuf import field_mask_pb2

from agentmesh.agents.v1 import agents_pb2
from agentmesh.identity.v1 import identity_pb2
from mesh import contract
from mesh.gateway.config import GatewayOptions, build
from mesh.gateway.ratelimits import rate_limit_actions
from mesh.runtime import wire
from mesh.runtime.convert import changes
from mesh.runtime.errors import InvalidArgument, ResourceExhausted
from mesh.runtime.revocation import RevocationList
from mesh.runtime.settings import Settings


@pytest.fixture(scope="module")
def the_contract():
    return contract.default()


@pytest.fixture(scope="module")
def bootstrap(the_contract):
    backends = {name: ("127.0.0.1", 9000 + i) for i, name in enumerate(the_contract.backends)}
    return build(the_contract, GatewayOptions(backends=backends, rate_limit_per_minute=120,
                                              ip_rate_limit_per_minute=600,
                                              auth_rate_limit_per_minute=30))


def _hcm(bootstrap):
    return bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
        "typed_config"]


def _filter(bootstrap, name):
    return next(f["typed_config"] for f in _hcm(bootstrap)["http_filters"] if f["name"] == name)


def _routes(bootstrap):
    return _hcm(bootstrap)["route_config"]["virtual_hosts"][0]["routes"]


# ---- gateway ---------------------------------------------------------------------------------
def test_rate_limits_are_per_tenant_per_ip_and_per_ip_on_auth_routes(bootstrap):
    limit = _filter(bootstrap, "envoy.filters.http.local_ratelimit")
    buckets = {tuple((e["key"], e.get("value", "")) for e in d["entries"]): d["token_bucket"]
               for d in limit["descriptors"]}
    assert buckets[(("tenant", ""),)]["max_tokens"] == 120
    assert buckets[(("remote_address", ""),)]["max_tokens"] == 600
    assert buckets[(("rate_class", "auth"), ("remote_address", ""))]["max_tokens"] == 30
    assert limit["rate_limits"] == rate_limit_actions()
    assert limit["always_consume_default_token_bucket"] is False


def test_health_is_never_rate_limited_and_auth_routes_are_marked(bootstrap):
    routes = {r["name"]: r for r in _routes(bootstrap)}
    health = routes["/agentmesh.system.v1.SystemService/CheckHealth"]
    off = health["typed_per_filter_config"]["envoy.filters.http.local_ratelimit"]
    assert off["filter_enabled"]["default_value"]["numerator"] == 0
    for rpc in ("Login", "Register", "Refresh"):
        meta = routes[f"/agentmesh.identity.v1.IdentityService/{rpc}"]["metadata"]
        assert meta["filter_metadata"]["agentmesh"]["rate_class"] == "auth"
    assert "rate_class" not in routes["/agentmesh.agents.v1.AgentService/ListAgents"][
        "metadata"]["filter_metadata"]["agentmesh"]


def test_internal_rpcs_get_no_route_and_no_public_rule(the_contract, bootstrap):
    internal = [r for r in the_contract.rpcs if r.internal]
    assert "ListRevocations" in [r.name for r in internal]
    names = {r["name"] for r in _routes(bootstrap)}
    jwt_rules = _filter(bootstrap, "envoy.filters.http.jwt_authn")["rules"]
    for rpc in internal:
        assert not rpc.bindings
        assert rpc.grpc_path not in names
        assert all(rule["match"].get("path") != rpc.grpc_path for rule in jwt_rules)


def test_gateway_5xx_texts_are_hidden_and_timestamps_use_seconds(bootstrap):
    config = _hcm(bootstrap)["local_reply_config"]
    for mapper in config["mappers"]:
        if "status_code_filter" not in mapper["filter"]:
            continue  # the QUERY-without-body mapper (an and_filter): a 405, tested elsewhere
        code = mapper["filter"]["status_code_filter"]["comparison"]["value"]["default_value"]
        body = mapper["body_format_override"]["json_format"]
        assert body["timestamp"] == "%START_TIME(%Y-%m-%dT%H:%M:%SZ)%"
        if code >= 500 and code != 501:
            assert "%LOCAL_REPLY_BODY%" not in body["message"], code


def test_jwt_clock_skew_is_small_and_revocation_claims_are_passed(bootstrap):
    provider = _filter(bootstrap, "envoy.filters.http.jwt_authn")["providers"]["identity"]
    assert provider["clock_skew_seconds"] == 5
    headers = {c["claim_name"]: c["header_name"] for c in provider["claim_to_headers"]}
    assert headers["sid"] == "x-agentmesh-session-id"
    assert headers["iat"] == "x-agentmesh-token-iat"


def test_lua_knows_the_body_limit_and_strips_the_new_identity_headers(bootstrap):
    lua = _filter(bootstrap, "envoy.filters.http.lua")["default_source_code"]["inline_string"]
    assert lua.startswith("local MAX_REQUEST_BYTES = 1048576\n")
    assert '"x-agentmesh-session-id", "x-agentmesh-token-iat"' in lua


def test_gateway_config_validates_with_envoy(bootstrap, tmp_path):
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    envoy = shutil.which("envoy") or str(Path(sys.executable).with_name("envoy"))
    path = tmp_path / "envoy.json"
    path.write_text(json.dumps(bootstrap))
    result = subprocess.run([envoy, "--mode", "validate", "-c", str(path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


# ---- malformed bodies ------------------------------------------------------------------------
def test_find_bad_field_names_the_broken_map_field():
    descriptor = agents_pb2.CreateAgentRequest.DESCRIPTOR
    labels = agents_pb2.Agent.DESCRIPTOR.fields_by_name["labels"]
    entry = b"\x0a\x01a\x12\x02\xff\xfe"  # key "a", value: invalid UTF-8
    agent = b"\x1a\x01x" + wire_key(labels.number, 2) + bytes([len(entry)]) + entry
    data = b"\x0a" + bytes([len(agent)]) + agent
    with pytest.raises(Exception):
        agents_pb2.CreateAgentRequest.FromString(data)
    assert wire.find_bad_field(descriptor, data).startswith("agent.labels")


def wire_key(number: int, wire_type: int) -> bytes:
    value = (number << 3) | wire_type
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def test_malformed_requests_become_a_marker_not_an_exception():
    parse = wire._safe(agents_pb2.CreateAgentRequest.FromString,
                       agents_pb2.CreateAgentRequest.DESCRIPTOR)
    assert isinstance(parse(b"\x0a\x05\xff"), wire.Malformed)
    assert isinstance(parse(agents_pb2.CreateAgentRequest().SerializeToString()),
                      agents_pb2.CreateAgentRequest)


# ---- PUT semantics ---------------------------------------------------------------------------
def test_put_without_mask_applies_what_the_body_carries_false_included():
    user = identity_pb2.User(active=False)
    assert changes(user, {"full_name", "role", "active"}) == {"active": False}
    assert changes(identity_pb2.User(full_name="Ann"), {"full_name", "role", "active"}) == {
        "full_name": "Ann"}


def test_put_with_mask_changes_exactly_the_named_fields():
    user = identity_pb2.User(active=False, full_name="ignored")
    assert changes(user, {"full_name", "role", "active"}, ["active"]) == {"active": False}
    with pytest.raises(InvalidArgument):
        changes(user, {"full_name"}, list(field_mask_pb2.FieldMask(paths=["email"]).paths))


# ---- revocation --------------------------------------------------------------------------------
def test_revocation_list_refuses_old_tokens_and_revoked_sessions():
    now = int(time.time())
    revoked = RevocationList({"u1": now}, frozenset({"s-dead"}))
    token = {"x-agentmesh-user-id": "u1", "x-agentmesh-token-iat": str(now - 5),
             "x-agentmesh-session-id": "s1"}
    assert revoked.refuses(token) == "TOKEN_REVOKED"
    assert revoked.refuses({**token, "x-agentmesh-token-iat": str(now)}) == ""
    assert revoked.refuses({**token, "x-agentmesh-user-id": "u2"}) == ""
    assert revoked.refuses({**token, "x-agentmesh-user-id": "u2",
                            "x-agentmesh-session-id": "s-dead"}) == "SESSION_REVOKED"
    # No token claims (API key, public or internal call): not this check's business.
    assert revoked.refuses({"x-agentmesh-user-id": "u1"}) == ""


# ---- login throttling ----------------------------------------------------------------------
@pytest.fixture
def identity_session(tmp_path):
    from sqlmodel import Session

    from mesh.runtime.db import Database

    settings = Settings(data_dir=tmp_path)
    database = Database.for_service("identity", settings)
    import mesh.identity.service as identity_service
    database.migrate(identity_service.DEFINITION.migration_dirs())
    with Session(database.engine) as session:
        yield session
    database.close()


def test_login_throttle_backs_off_exponentially_and_clears(identity_session):
    from mesh.identity import security
    from mesh.identity.models import LoginThrottleRow

    settings = Settings(login_backoff_base_seconds=1, login_backoff_max_seconds=8)
    key = security.account_key("a@example.com")
    for _ in range(2):
        security.record_failure(identity_session, settings, key, free=3)
    security.check_not_locked(identity_session, [key])  # under the free failures
    delays = []
    for _ in range(5):
        security.record_failure(identity_session, settings, key, free=3)
        row = identity_session.get(LoginThrottleRow, key)
        delays.append(round((row.locked_until - row.last_failure_at).total_seconds()))
    assert delays == [1, 2, 4, 8, 8]
    with pytest.raises(ResourceExhausted) as locked:
        security.check_not_locked(identity_session, [key])
    assert 1 <= locked.value.details["retry_after"] <= 8
    security.clear(identity_session, key)
    identity_session.flush()
    security.check_not_locked(identity_session, [key])


def test_revocations_round_up_and_later_tokens_pass(identity_session):
    from mesh.identity import security

    settings = Settings()
    security.revoke_user(identity_session, settings, "u1")
    security.revoke_session(identity_session, settings, "fam")
    identity_session.flush()
    users, sessions = security.revocations(identity_session)
    assert sessions == ["fam"] and users["u1"] >= int(time.time())
    assert security.user_not_before(identity_session, "u1") > 0


def test_internal_rpcs_are_not_in_the_openapi_document():
    from mesh import resources

    document = resources.openapi_document().decode()
    assert "ListRevocations" not in document and "revocation" not in document.lower()
    health = json.loads(document)["paths"]["/api/v1/system/health"]["get"]
    assert health["x-required-scope"] == "system:read"


def test_a_huge_rate_limit_still_makes_a_valid_bucket():
    """`--rate-limit 1000000000` (a benchmark's "no limit"): the per-IP bucket is 10x that,
    past Envoy's uint32 fields; it is capped instead of failing Envoy's start."""
    from mesh.gateway.ratelimits import bucket as _bucket

    assert _bucket(10_000_000_000)["max_tokens"] == 2**32 - 1
    assert _bucket(0)["max_tokens"] == 1


def test_an_api_keys_scopes_are_cut_to_its_creators_current_ones():
    from mesh.identity.roles import effective_scopes, scopes_for, tenant_admin_scopes

    developer = scopes_for(identity_pb2.ROLE_DEVELOPER, operator=False)
    viewer = scopes_for(identity_pb2.ROLE_VIEWER, operator=False)
    key = ["tools:write", "tools:read", "secrets:read"]
    assert effective_scopes(key, developer) == sorted(key)
    assert effective_scopes(key, viewer) == ["tools:read"]
    assert effective_scopes(["tools:*"], viewer) == ["tools:read"]
    assert effective_scopes(["*"], developer) == sorted(developer)
    assert effective_scopes(["*"], ["*"]) == ["*"]
    assert effective_scopes(["platform:read", "system:write"], tenant_admin_scopes()) == []
    assert effective_scopes(["users:write"], viewer) == []


def test_platform_internals_and_system_writes_are_for_operator_admins_only():
    from mesh.identity.roles import OPERATOR_ONLY, scopes_for
    from mesh.runtime.scopes import holds as covers

    for role in (identity_pb2.ROLE_ADMIN, identity_pb2.ROLE_DEVELOPER, identity_pb2.ROLE_VIEWER):
        held = frozenset(scopes_for(role, operator=False))
        assert not any(covers(held, scope) for scope in OPERATOR_ONLY), role
        assert covers(held, "system:read")
    assert all(covers(frozenset(scopes_for(identity_pb2.ROLE_ADMIN, operator=True)), scope)
               for scope in OPERATOR_ONLY)
