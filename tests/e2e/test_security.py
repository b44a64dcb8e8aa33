"""The attack list of issue 7, kept running: every forgery, spoofed header, cross-tenant access,
mass assignment and escalation that was refused must stay refused, and each fixed weakness
(points 1-8) has an end-to-end test through the real gateway. See docs/threat-model.md."""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
import uuid

import httpx2
import pytest

from tests.conftest import (USER_PASSWORD, assert_envelope, new_user, register, start_mesh,
                            stop_mesh)
from tests.support import tokens

REVOCATION_WINDOW_SECONDS = 3.0  # documented: poll interval (1 s) + a round trip, with margin
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def _name(prefix: str = "sec") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _refused_within(client: httpx2.Client, request, window: float = REVOCATION_WINDOW_SECONDS):
    """Repeats `request(client)` until it answers 401; returns that answer and the delay."""
    started = time.monotonic()
    while True:
        reply = request(client)
        if reply.status_code == 401 or time.monotonic() - started > window + 2:
            return reply, time.monotonic() - started
        time.sleep(0.2)


# ---- token forgeries ------------------------------------------------------------------------
@pytest.mark.parametrize("case", [
    "alg_none", "hs256_with_public_key", "foreign_key_real_kid", "expired_beyond_skew",
    "no_exp", "wrong_audience", "wrong_issuer", "future_nbf", "garbage"])
def test_forged_tokens_are_refused(mesh, tenant, case):
    kid, pem = tokens.signing_key(mesh)
    token = tokens.forged(case, tenant, kid, pem)
    with mesh.client(token) as client:
        assert_envelope(client.get("/api/v1/agents"), 401, "UNAUTHENTICATED")


def test_refresh_token_as_bearer_and_token_in_query_are_refused(mesh, tenant):
    with mesh.client(tenant.refresh_token) as client:
        assert_envelope(client.get("/api/v1/agents"), 401, "UNAUTHENTICATED")
    with mesh.client() as client:
        reply = client.get("/api/v1/agents", params={"access_token": tenant.token})
        assert reply.status_code in (400, 401)
        assert_envelope(reply, reply.status_code, reply.json()["error"])


def test_spoofed_identity_headers_are_dropped(mesh, tenant, other_tenant):
    with mesh.client(tenant.token) as client:
        mine = client.post("/api/v1/agents", json={"name": _name()}).json()
    spoofed = {"x-agentmesh-tenant-id": tenant.tenant_id, "x-agentmesh-user-id": tenant.user_id,
               "x-agentmesh-scopes": "*", "x-agentmesh-session-id": "x",
               "x-agentmesh-token-iat": "99999999999"}
    with mesh.client(other_tenant.token) as client:
        assert_envelope(client.get(f"/api/v1/agents/{mine['id']}", headers=spoofed), 404,
                        "NOT_FOUND")
    with mesh.client() as client:
        assert_envelope(client.get("/api/v1/agents", headers=spoofed), 401, "UNAUTHENTICATED")


# ---- cross-tenant matrix ----------------------------------------------------------------------
def test_cross_tenant_matrix_by_id_and_by_name(mesh, tenant, other_tenant):
    name = _name("private")
    with mesh.client(tenant.token) as client:
        agent = client.post("/api/v1/agents", json={"name": name}).json()
        key = client.post("/api/v1/auth/api-keys", json={"name": _name("k"),
                                                          "scopes": ["agents:read"]}).json()
    user_id, _, _ = new_user(mesh, tenant, "ROLE_VIEWER")
    with mesh.client(other_tenant.token) as client:
        for ref in (agent["id"], name):
            assert_envelope(client.get(f"/api/v1/agents/{ref}"), 404, "NOT_FOUND")
            assert_envelope(client.put(f"/api/v1/agents/{ref}", json={"name": "x"}), 404,
                            "NOT_FOUND")
            assert_envelope(client.delete(f"/api/v1/agents/{ref}"), 404, "NOT_FOUND")
            for action in ("activate", "deactivate", "deploy", "undeploy"):
                assert_envelope(client.post(f"/api/v1/agents/{ref}/{action}", json={}), 404,
                                "NOT_FOUND")
            assert_envelope(client.get(f"/api/v1/agents/{ref}/stats"), 404, "NOT_FOUND")
        assert_envelope(client.get(f"/api/v1/auth/users/{user_id}"), 404, "NOT_FOUND")
        assert_envelope(client.put(f"/api/v1/auth/users/{user_id}",
                                   json={"role": "ROLE_ADMIN", "active": True}), 404, "NOT_FOUND")
        assert_envelope(client.delete(f"/api/v1/auth/users/{user_id}"), 404, "NOT_FOUND")
        assert_envelope(client.delete(f"/api/v1/auth/api-keys/{key['id']}"), 404, "NOT_FOUND")
        assert client.get("/api/v1/agents", params={"search": name}).json()["total"] == 0
        assert all(u["id"] != user_id for u in client.get("/api/v1/auth/users").json()["items"])
    with mesh.client(api_key=key["key"]) as client:  # the key still reads its own tenant only
        assert client.get(f"/api/v1/agents/{agent['id']}").status_code == 200


# ---- mass assignment and escalation -------------------------------------------------------
def test_mass_assignment_of_output_only_fields_is_ignored(mesh, tenant, other_tenant):
    forged = {"name": _name(), "id": str(uuid.uuid4()), "tenant_id": other_tenant.tenant_id,
              "status": "AGENT_STATUS_DEPLOYED", "version": 99, "created_by": "someone"}
    with mesh.client(tenant.token) as client:
        agent = client.post("/api/v1/agents", json=forged).json()
        assert agent["id"] != forged["id"] and agent["tenant_id"] == tenant.tenant_id
        assert agent["status"] == "AGENT_STATUS_DRAFT" and agent["version"] == 1
        assert agent["created_by"] == tenant.user_id
        updated = client.put(f"/api/v1/agents/{agent['id']}", json={
            "name": agent["name"], "tenant_id": other_tenant.tenant_id, "version": 50,
            "status": "AGENT_STATUS_DEPLOYED"}).json()
        assert updated["tenant_id"] == tenant.tenant_id and updated["status"] == "AGENT_STATUS_DRAFT"
        assert_envelope(client.put(f"/api/v1/agents/{agent['id']}", json={"name": agent["name"]},
                                   params={"update_mask": "status"}), 400, "INVALID_ARGUMENT")


def test_privilege_escalation_through_roles_and_api_keys_is_refused(mesh, tenant):
    dev_id, _, dev_token = new_user(mesh, tenant, "ROLE_DEVELOPER")
    with mesh.client(dev_token) as client:
        # No users:write: cannot promote itself or create an admin.
        assert_envelope(client.put(f"/api/v1/auth/users/{dev_id}",
                                   json={"role": "ROLE_ADMIN", "active": True}), 403,
                        "PERMISSION_DENIED")
        assert_envelope(client.post("/api/v1/auth/users", json={
            "email": f"x-{uuid.uuid4().hex[:6]}@example.com", "password": "whatever-12",
            "role": "ROLE_ADMIN"}), 403, "PERMISSION_DENIED")
        # An API key cannot hold more than its creator.
        for scopes in (["*"], ["users:write"], ["users:*"]):
            assert_envelope(client.post("/api/v1/auth/api-keys", json={
                "name": _name("k"), "scopes": scopes}), 403, "PERMISSION_DENIED")
        key = client.post("/api/v1/auth/api-keys", json={"name": _name("k"),
                                                          "scopes": ["agents:read"]}).json()["key"]
    with mesh.client(api_key=key) as client:
        # A key cannot mint a broader key, nor manage users.
        assert_envelope(client.post("/api/v1/auth/api-keys", json={
            "name": _name("k"), "scopes": ["agents:read"]}), 403, "PERMISSION_DENIED")
        assert_envelope(client.get("/api/v1/auth/users"), 403, "PERMISSION_DENIED")


def test_internal_rpcs_are_not_routed_by_the_gateway(mesh, tenant):
    import grpc

    from agentmesh.identity.v1 import identity_pb2, identity_pb2_grpc

    target = httpx2.URL(mesh.url).netloc.decode()
    with grpc.insecure_channel(target) as channel:
        stub = identity_pb2_grpc.IdentityServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.ListRevocations(identity_pb2.ListRevocationsRequest(), timeout=10,
                                 metadata=(("authorization", f"Bearer {tenant.token}"),))
        assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED


# ---- 1. rate limits ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def limited_mesh(tmp_path_factory):
    """A mesh with small per-tenant (60/min) and auth-route (30/min per IP) limits and a
    generous per-IP limit."""
    running = start_mesh(tmp_path_factory.mktemp("limited"), rate_limit=60,
                         extra_env={"AGENTMESH_GATEWAY_AUTH_RATE_LIMIT": "30",
                                    "AGENTMESH_GATEWAY_IP_RATE_LIMIT": "100000"})
    yield running
    stop_mesh(running)


def test_a_flooding_tenant_does_not_limit_other_tenants_login_or_health(limited_mesh):
    flooder, victim = register(limited_mesh, "flood"), register(limited_mesh, "victim")
    statuses: list[int] = []
    limited: list[httpx2.Response] = []

    def flood() -> None:
        with limited_mesh.client(flooder.token) as client:
            for _ in range(30):
                reply = client.get("/api/v1/agents")
                statuses.append(reply.status_code)
                if reply.status_code == 429:
                    limited.append(reply)

    threads = [threading.Thread(target=flood) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 429 in statuses
    body = assert_envelope(limited[0], 429, "RATE_LIMIT_EXCEEDED")
    assert int(limited[0].headers["retry-after"]) >= 1
    assert TIMESTAMP.match(body["timestamp"])
    with limited_mesh.client(victim.token) as client:
        assert client.get("/api/v1/agents").status_code == 200
    with limited_mesh.client() as client:
        assert client.post("/api/v1/auth/login", json={
            "email": victim.email, "password": victim.password}).status_code == 200
        for _ in range(100):
            assert client.get("/health").status_code == 200
    with limited_mesh.client(flooder.token) as client:
        replies = (client.get("/api/v1/agents") for _ in range(100))
        assert any(r.status_code == 429 for r in replies)
        time.sleep(2.2)  # the bucket refills one second's share (1/s at 60/min) every second
        assert client.get("/api/v1/agents").status_code == 200


def test_auth_routes_are_limited_per_client_ip(limited_mesh):
    tenant = register(limited_mesh, "ipcheck")
    statuses = []
    with limited_mesh.client() as client:
        for _ in range(60):
            reply = client.post("/api/v1/auth/refresh", json={"refresh_token": "bogus"})
            statuses.append(reply.status_code)
            if reply.status_code == 429:
                assert_envelope(reply, 429, "RATE_LIMIT_EXCEEDED")
                assert int(reply.headers["retry-after"]) >= 1
                break
    assert statuses[-1] == 429 and set(statuses[:-1]) == {401}
    with limited_mesh.client(tenant.token) as client:  # the API itself is another bucket
        assert client.get("/api/v1/agents").status_code == 200


# ---- 2. revocation -----------------------------------------------------------------------------
def test_deleted_users_token_is_refused_within_the_window(mesh, tenant):
    user_id, _, token = new_user(mesh, tenant)
    with mesh.client(token) as client:
        assert client.get("/api/v1/agents").status_code == 200
    with mesh.client(tenant.token) as admin:
        assert admin.delete(f"/api/v1/auth/users/{user_id}").status_code == 200
    with mesh.client(token) as client:
        reply, delay = _refused_within(client, lambda c: c.post("/api/v1/agents",
                                                                  json={"name": _name()}))
    body = assert_envelope(reply, 401, "UNAUTHENTICATED")
    assert body["details"]["reason"] == "TOKEN_REVOKED"
    assert delay <= REVOCATION_WINDOW_SECONDS


def test_deactivated_users_token_and_login_are_refused(mesh, tenant):
    user_id, email, token = new_user(mesh, tenant)
    with mesh.client(tenant.token) as admin:
        # PUT is a full replacement: `active: false` is applied, never dropped.
        reply = admin.put(f"/api/v1/auth/users/{user_id}",
                          json={"active": False, "role": "ROLE_DEVELOPER"})
        assert reply.status_code == 200 and reply.json()["active"] is False, reply.text
    with mesh.client(token) as client:
        reply, delay = _refused_within(client, lambda c: c.get("/api/v1/agents"))
    assert_envelope(reply, 401, "UNAUTHENTICATED")
    assert delay <= REVOCATION_WINDOW_SECONDS
    with mesh.client() as client:
        assert_envelope(client.post("/api/v1/auth/login", json={
            "email": email, "password": USER_PASSWORD}), 401, "UNAUTHENTICATED")


def test_a_role_change_refuses_old_tokens_and_a_new_sign_in_works_at_once(mesh, tenant):
    user_id, email, token = new_user(mesh, tenant, "ROLE_DEVELOPER")
    with mesh.client(tenant.token) as admin:
        demoted = admin.put(f"/api/v1/auth/users/{user_id}", json={"role": "ROLE_VIEWER",
                                                                    "active": True})
        assert demoted.status_code == 200, demoted.text
    with mesh.client() as client:  # in the same second as the revocation
        fresh = client.post("/api/v1/auth/login", json={"email": email,
                                                         "password": USER_PASSWORD})
        assert fresh.status_code == 200
    with mesh.client(token) as client:  # the developer token (agents:*) is refused
        reply, delay = _refused_within(client, lambda c: c.post("/api/v1/agents",
                                                                  json={"name": _name()}))
    assert_envelope(reply, 401, "UNAUTHENTICATED")
    assert delay <= REVOCATION_WINDOW_SECONDS
    with mesh.client(fresh.json()["access_token"]) as client:
        assert client.get("/api/v1/agents").status_code == 200
        assert_envelope(client.post("/api/v1/agents", json={"name": _name()}), 403,
                        "PERMISSION_DENIED")


def test_logged_out_sessions_token_is_refused_but_other_sessions_work(mesh, tenant):
    with mesh.client() as client:
        one = client.post("/api/v1/auth/login", json={"email": tenant.email,
                                                       "password": tenant.password}).json()
        two = client.post("/api/v1/auth/login", json={"email": tenant.email,
                                                       "password": tenant.password}).json()
    with mesh.client(one["access_token"]) as client:
        out = client.post("/api/v1/auth/logout", json={"refresh_token": one["refresh_token"]})
        assert out.status_code == 200 and out.json()["success"] is True
        reply, delay = _refused_within(client, lambda c: c.get("/api/v1/agents"))
    body = assert_envelope(reply, 401, "UNAUTHENTICATED")
    assert body["details"]["reason"] == "SESSION_REVOKED" and delay <= REVOCATION_WINDOW_SECONDS
    with mesh.client(two["access_token"]) as client:
        assert client.get("/api/v1/agents").status_code == 200


def test_api_key_dies_with_its_creator(mesh, tenant):
    user_id, _, token = new_user(mesh, tenant)
    with mesh.client(token) as client:
        key = client.post("/api/v1/auth/api-keys", json={"name": _name("k"),
                                                          "scopes": ["agents:*"]}).json()["key"]
    with mesh.client(api_key=key) as client:
        assert client.post("/api/v1/agents", json={"name": _name()}).status_code == 200
    with mesh.client(tenant.token) as admin:
        assert admin.delete(f"/api/v1/auth/users/{user_id}").status_code == 200
    with mesh.client(api_key=key) as client:
        assert_envelope(client.post("/api/v1/agents", json={"name": _name()}), 401,
                        "UNAUTHENTICATED")
        assert_envelope(client.get("/api/v1/agents"), 401, "UNAUTHENTICATED")


# ---- 3. malformed bodies -----------------------------------------------------------------------
@pytest.mark.parametrize("body, field", [
    ('{"name":"x","labels":{"a":{"b":1}}}', "labels"),  # object as a map<string,string> value
    ('{"name":"x","labels":{"a":[1]}}', "labels"),
    ('{"name":"x","labels":{"a":1}}', "labels"),
    ('{"name":"x","labels":"a"}', "labels"),
    ('{"name":"x","config":5}', "config"),  # Struct
    ('{"name":"x","config":[1]}', "config"),  # a list where the Struct's object goes
    ('{"name":"x","tools":{"a":1}}', "tools"),
    ('{"name":5}', "name"),
    ('{"name":"x","version":"abc"}', "version"),
    ('{"name":"x","status":"BOGUS"}', "status"),  # enum string
    ('{"name":"x","created_at":"yesterday"}', "created_at"),  # Timestamp
    ('{"name":"x","deployed_at":12}', "deployed_at"),
    ('{not json', ""),
    ('[1,2]', ""),
])
def test_malformed_agent_bodies_are_400_in_the_envelope(mesh, tenant, body, field):
    with mesh.client(tenant.token) as client:
        reply = client.post("/api/v1/agents", content=body.encode(),
                            headers={"Content-Type": "application/json"})
    envelope = assert_envelope(reply, 400, "INVALID_ARGUMENT")
    assert "DecodeError" not in reply.text and "Unexpected" not in reply.text
    if field:
        assert field in envelope["message"] or field in json.dumps(envelope["details"])


@pytest.mark.parametrize("path, body", [
    ("/api/v1/auth/api-keys", '{"name":"k","scopes":["agents:read"],"expires_at":"soon"}'),
    ("/api/v1/auth/users", '{"email":"a@b.c","password":"x","role":"ROLE_GOD"}'),
    ("/api/v1/auth/login", '{"email":["a"],"password":"x"}'),
    # Services not built yet still refuse malformed bodies with 400 (not 500, not 501).
    ("/api/v1/tools", '{"name":"t","http":{"url":"u","timeout":"soon"}}'),  # Duration
    ("/api/v1/tools", '{"name":"t","http":{"url":"u","timeout":5}}'),
    ("/api/v1/tools", '{"name":"t","http":{"url":"u","headers":{"a":{"b":1}}}}'),  # map
    ("/api/v1/tools", '{"name":"t","http":{"url":"u","headers":{"a":[1,2]}}}'),
    ("/api/v1/agents", '{"name":"t","description":"\\ud800"}'),  # lone surrogate
])
def test_other_malformed_bodies_are_400_in_the_envelope(mesh, tenant, path, body):
    with mesh.client(tenant.token) as client:
        reply = client.post(path, content=body.encode(), headers={"Content-Type": "application/json"})
    assert_envelope(reply, 400, "INVALID_ARGUMENT")


def test_corrupt_wire_format_from_a_native_grpc_client_is_invalid_argument(mesh, tenant):
    import grpc

    target = httpx2.URL(mesh.url).netloc.decode()
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary("/agentmesh.agents.v1.AgentService/CreateAgent",
                                   request_serializer=lambda raw: raw,
                                   response_deserializer=lambda raw: raw)
        with pytest.raises(grpc.RpcError) as refused:
            call(b"\x0a\x05\xff\xff", timeout=10,
                 metadata=(("authorization", f"Bearer {tenant.token}"),))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "DecodeError" not in (refused.value.details() or "")


# ---- 4. oversized bodies -----------------------------------------------------------------------
@pytest.mark.parametrize("size", [2_000_000, 20_000_000])
def test_oversized_bodies_get_the_413_envelope(mesh, tenant, size):
    with mesh.client(tenant.token) as client:
        reply = client.post("/api/v1/agents", json={"name": "big", "system_prompt": "x" * size})
    assert_envelope(reply, 413, "PAYLOAD_TOO_LARGE")
    # A client that writes the whole body before reading (http.client, requests) too.
    host, port = httpx2.URL(mesh.url).host, httpx2.URL(mesh.url).port
    connection = http.client.HTTPConnection(host, port, timeout=60)
    body = b'{"name":"big","system_prompt":"' + b"x" * size + b'"}'
    connection.request("POST", "/api/v1/agents", body=body, headers={
        "Authorization": f"Bearer {tenant.token}", "Content-Type": "application/json"})
    answer = connection.getresponse()
    assert answer.status == 413
    assert json.loads(answer.read())["error"] == "PAYLOAD_TOO_LARGE"
    connection.close()


# ---- 5. login throttling -----------------------------------------------------------------------
def test_login_throttle_engages_and_releases(mesh, tenant):
    with mesh.client() as client:
        for _ in range(5):  # the free failures (AGENTMESH_LOGIN_FREE_FAILURES_PER_ACCOUNT)
            assert_envelope(client.post("/api/v1/auth/login", json={
                "email": tenant.email, "password": "wrong-password"}), 401, "UNAUTHENTICATED")
        # Locked now: even the right password waits, with Retry-After.
        locked = client.post("/api/v1/auth/login", json={"email": tenant.email,
                                                          "password": tenant.password})
        body = assert_envelope(locked, 429, "RESOURCE_EXHAUSTED")
        assert body["details"]["reason"] == "LOGIN_THROTTLED"
        wait = int(locked.headers["retry-after"])
        assert 1 <= wait <= 2
        time.sleep(wait + 0.3)
        released = client.post("/api/v1/auth/login", json={"email": tenant.email,
                                                            "password": tenant.password})
        assert released.status_code == 200, released.text


def test_unknown_accounts_are_throttled_alike(mesh):
    email = f"ghost-{uuid.uuid4().hex[:6]}@example.com"
    with mesh.client() as client:
        answers = [client.post("/api/v1/auth/login", json={"email": email, "password": "nope-nope"})
                   for _ in range(6)]
    assert [a.status_code for a in answers] == [401] * 5 + [429]


def test_registration_conflicts_name_neither_value(mesh, tenant):
    with mesh.client() as client:
        taken_email = client.post("/api/v1/auth/register", json={
            "tenant_name": _name("t"), "email": tenant.email, "password": "another-pass-1"})
        name = _name("t")
        assert client.post("/api/v1/auth/register", json={
            "tenant_name": name, "email": f"{name}@example.com",
            "password": "another-pass-1"}).status_code == 200
        taken_name = client.post("/api/v1/auth/register", json={
            "tenant_name": name.upper(), "email": f"other-{name}@example.com",
            "password": "another-pass-1"})
    for reply in (taken_email, taken_name):
        body = assert_envelope(reply, 409, "ALREADY_EXISTS")
        assert tenant.email not in reply.text
        assert body["details"]["reason"] == "REGISTRATION_CONFLICT"
    assert taken_email.json()["message"] == taken_name.json()["message"]


# ---- 6. validation gaps ------------------------------------------------------------------------
def test_validation_gaps_are_closed(mesh, tenant):
    with mesh.client(tenant.token) as client:
        body = assert_envelope(client.post("/api/v1/agents", json={
            "name": _name(), "agent_type": "BOGUS"}), 400, "INVALID_ARGUMENT")
        assert body["details"]["field_violations"][0]["field"] == "agent_type"
        assert client.post("/api/v1/agents", json={"name": _name(),
                                                   "agent_type": "router"}).status_code == 200
        body = assert_envelope(client.post("/api/v1/auth/api-keys", json={
            "name": _name("k"), "scopes": ["agents:fly"]}), 400, "INVALID_ARGUMENT")
        assert body["details"]["reason"] == "UNKNOWN_SCOPE"
        assert_envelope(client.post("/api/v1/agents", content=json.dumps({"name": _name()}),
                                    headers={"Content-Type": "text/plain"}),
                        415, "UNSUPPORTED_MEDIA_TYPE")
        assert client.post("/api/v1/agents", content=json.dumps({"name": _name()}),
                           headers={"Content-Type": "application/json; charset=utf-8"}
                           ).status_code == 200
        client.post("/api/v1/agents", json={"name": _name("plain")})
        literal = client.post("/api/v1/agents", json={"name": _name("x"),
                                                      "description": "100% sure"}).json()
        found = client.get("/api/v1/agents", params={"search": "%"}).json()
        assert [a["id"] for a in found["items"]] == [literal["id"]]
        assert client.get("/api/v1/agents", params={"search": "_"}).json()["total"] == 0


def test_health_is_a_status_for_anyone_and_detail_needs_system_read(mesh, tenant):
    viewer_id, _, viewer = new_user(mesh, tenant, "ROLE_VIEWER")
    with mesh.client() as client:
        health = client.get("/health").json()
        assert health["status"] == "healthy" and health["services"] == []
        assert_envelope(client.get("/api/v1/system/health"), 401, "UNAUTHENTICATED")
    with mesh.client(viewer) as client:  # viewers hold system:read
        detail = client.get("/api/v1/system/health").json()
        assert {"identity", "agents", "system"} <= {s["name"] for s in detail["services"]}
    key = None
    with mesh.client(tenant.token) as client:
        key = client.post("/api/v1/auth/api-keys", json={"name": _name("k"),
                                                          "scopes": ["agents:read"]}).json()["key"]
    with mesh.client(api_key=key) as client:
        assert_envelope(client.get("/api/v1/system/health"), 403, "PERMISSION_DENIED")


def test_503_answers_hide_envoy_internals(tmp_path):
    """A service that is down answers 503 in the envelope without Envoy's reset reasons. Its
    own mesh: the test kills the process that hosts the services."""
    import subprocess

    from tests.conftest import register, start_mesh, stop_mesh

    own = start_mesh(tmp_path / "down")
    try:
        tenant = register(own)
        services = subprocess.run(["pgrep", "-P", str(own.process.pid), "-f", "mesh.cli serve"],
                                  capture_output=True, text=True).stdout.split()
        seen = None
        subprocess.run(["kill", "-9", *services], check=False)
        with own.client() as client:
            for _ in range(50):  # until the supervisor has restarted it
                reply = client.post("/api/v1/auth/login", json={"email": tenant.email,
                                                                "password": "wrong-password"})
                if reply.status_code == 503:
                    seen = reply
                    break
                time.sleep(0.1)
    finally:
        stop_mesh(own)
    assert seen is not None, "no 503 seen while the service was down"
    body = assert_envelope(seen, 503, "UNAVAILABLE")
    assert "upstream" not in seen.text and "reset reason" not in seen.text
    assert body["message"] == "the service is unavailable; retry later"


# ---- 7. updates that lie -----------------------------------------------------------------------
def test_put_applies_or_refuses_every_field(mesh, tenant):
    user_id, _, _ = new_user(mesh, tenant, "ROLE_VIEWER")
    with mesh.client(tenant.token) as client:
        # The field the body carries is applied, false included; the others stay.
        plain = client.put(f"/api/v1/auth/users/{user_id}", json={"active": False})
        assert plain.status_code == 200, plain.text
        assert plain.json()["active"] is False and plain.json()["role"] == "ROLE_VIEWER"
        assert client.get(f"/api/v1/auth/users/{user_id}").json()["active"] is False
        # With update_mask: exactly the named field, even to its default.
        masked = client.put(f"/api/v1/auth/users/{user_id}", json={"full_name": "Ann"},
                            params={"update_mask": "active,full_name"})
        assert masked.status_code == 200 and masked.json()["full_name"] == "Ann"
        assert masked.json()["active"] is False and masked.json()["role"] == "ROLE_VIEWER"


def test_noop_update_keeps_the_version(mesh, tenant):
    with mesh.client(tenant.token) as client:
        agent = client.post("/api/v1/agents", json={"name": _name(), "model": "m"}).json()
        same = client.put(f"/api/v1/agents/{agent['id']}", json={"name": agent["name"],
                                                                  "model": "m"}).json()
        assert same["version"] == 1 and same["updated_at"] == agent["updated_at"]
        changed = client.put(f"/api/v1/agents/{agent['id']}", json={"name": agent["name"],
                                                                     "model": "n"}).json()
        assert changed["version"] == 2


def test_api_key_created_expired_is_400(mesh, tenant):
    with mesh.client(tenant.token) as client:
        body = assert_envelope(client.post("/api/v1/auth/api-keys", json={
            "name": _name("k"), "scopes": ["agents:read"],
            "expires_at": "2020-01-01T00:00:00Z"}), 400, "INVALID_ARGUMENT")
    assert body["details"]["field_violations"][0]["field"] == "expires_at"


def test_logout_with_another_tenants_refresh_token_revokes_nothing(mesh, tenant, other_tenant):
    with mesh.client(other_tenant.token) as client:
        reply = client.post("/api/v1/auth/logout", json={"refresh_token": tenant.refresh_token})
        body = assert_envelope(reply, 404, "NOT_FOUND")  # not among the caller's sessions
        assert "revoked" not in body["message"]
    with mesh.client() as client:  # the token still works for its owner
        assert client.post("/api/v1/auth/refresh",
                           json={"refresh_token": tenant.refresh_token}).status_code == 200


def test_gateway_and_service_errors_format_the_timestamp_alike(mesh, tenant):
    with mesh.client(tenant.token) as client:
        gateway_made = client.get("/api/v1/nothing-here").json()  # Envoy's 404
        service_made = client.get(f"/api/v1/agents/{uuid.uuid4()}").json()  # the service's 404
        lua_made = client.post("/api/v1/agents", content=b"x",
                               headers={"Content-Type": "text/plain"}).json()
    for body in (gateway_made, service_made, lua_made):
        assert TIMESTAMP.match(body["timestamp"]), body


# ---- 8. Idempotency-Key ------------------------------------------------------------------------
def test_idempotency_key_replays_the_first_answer_and_creates_one_row(mesh, tenant):
    name = _name("idem")
    headers = {"Idempotency-Key": uuid.uuid4().hex}
    with mesh.client(tenant.token) as client:
        first = client.post("/api/v1/agents", json={"name": name}, headers=headers)
        again = client.post("/api/v1/agents", json={"name": name}, headers=headers)
        assert first.status_code == again.status_code == 200
        assert again.json() == first.json()
        assert again.headers["idempotency-replayed"] == "true"
        assert "idempotency-replayed" not in first.headers
        assert client.get("/api/v1/agents", params={"search": name}).json()["total"] == 1
        other = client.post("/api/v1/agents", json={"name": name + "-2"}, headers=headers)
        body = assert_envelope(other, 409, "ABORTED")
        assert body["details"]["reason"] == "IDEMPOTENCY_KEY_REUSED"
        # Without the header, a second create is a second create (here: a name conflict).
        assert_envelope(client.post("/api/v1/agents", json={"name": name}), 409, "ALREADY_EXISTS")


def test_idempotency_keys_are_per_tenant_and_a_failed_first_call_stores_nothing(
        mesh, tenant, other_tenant):
    key = {"Idempotency-Key": uuid.uuid4().hex}
    name = _name("idem")
    with mesh.client(tenant.token) as client:
        assert_envelope(client.post("/api/v1/agents", json={"name": "bad name!"}, headers=key),
                        400, "INVALID_ARGUMENT")
        assert client.post("/api/v1/agents", json={"name": name}, headers=key).status_code == 200
    with mesh.client(other_tenant.token) as client:
        theirs = client.post("/api/v1/agents", json={"name": name}, headers=key)
        assert theirs.status_code == 200 and theirs.json()["tenant_id"] == other_tenant.tenant_id


# ---- issue 20: idempotent replays by another caller, keys of a demoted creator ---------------
def test_an_idempotent_replay_by_another_caller_never_gets_the_first_answer(mesh, tenant):
    """The caller is part of an idempotency record: a developer who sends the admin's API-key
    create with the admin's Idempotency-Key runs it as the developer (SCOPE_NOT_HELD), as does
    the admin's own narrower API key; neither is handed the admin's new key. The admin's own
    replay still gets its first answer."""
    _, _, developer = new_user(mesh, tenant, "ROLE_DEVELOPER")
    key = {"Idempotency-Key": uuid.uuid4().hex}
    body = {"name": _name("k"), "scopes": ["users:write", "apikeys:write"]}
    with mesh.client(tenant.token) as admin:
        first = admin.post("/api/v1/auth/api-keys", json=body, headers=key)
        assert first.status_code == 200 and first.json()["key"].startswith("amk_"), first.text
        narrow = admin.post("/api/v1/auth/api-keys", json={
            "name": _name("k"), "scopes": ["apikeys:write"]}).json()["key"]
    for client in (mesh.client(developer), mesh.client(api_key=narrow)):
        with client:
            replay = client.post("/api/v1/auth/api-keys", json=body, headers=key)
            refused = assert_envelope(replay, 403, "PERMISSION_DENIED")
            assert refused["details"]["reason"] == "SCOPE_NOT_HELD"
            assert first.json()["key"] not in replay.text and first.json()["id"] not in replay.text
            assert "idempotency-replayed" not in replay.headers
    with mesh.client(tenant.token) as admin:
        again = admin.post("/api/v1/auth/api-keys", json=body, headers=key)
        assert again.json() == first.json() and again.headers["idempotency-replayed"] == "true"
        # A create the other user may make runs as that user too: here a name conflict.
        agent_key = {"Idempotency-Key": uuid.uuid4().hex}
        agent = {"name": _name("idem")}
        assert admin.post("/api/v1/agents", json=agent, headers=agent_key).status_code == 200
    with mesh.client(developer) as client:
        theirs = client.post("/api/v1/agents", json=agent, headers=agent_key)
        assert_envelope(theirs, 409, "ALREADY_EXISTS")
        assert "idempotency-replayed" not in theirs.headers


def test_a_demoted_creators_api_key_loses_the_scopes_at_once(mesh, tenant):
    """An API key's scopes are always within its creator's current ones: a developer's key
    with tools:write and secrets:read creates tools and lists secrets until the admin makes
    the developer a viewer, and from the next request on it does neither."""
    user_id, _, developer = new_user(mesh, tenant, "ROLE_DEVELOPER")
    with mesh.client(developer) as client:
        made = client.post("/api/v1/auth/api-keys", json={
            "name": _name("k"), "scopes": ["tools:write", "tools:read", "secrets:read"]})
        assert made.status_code == 200, made.text
        key = made.json()["key"]

    def tool() -> dict:
        return {"name": _name("tool"), "type": "TOOL_TYPE_BUILTIN",
                "status": "TOOL_STATUS_ACTIVE", "builtin": {"builtin_name": "math"}}

    with mesh.client(api_key=key) as client:
        assert client.post("/api/v1/tools", json=tool()).status_code == 200
        assert client.get("/api/v1/master-data/secrets").status_code == 200
    with mesh.client(tenant.token) as admin:
        demoted = admin.put(f"/api/v1/auth/users/{user_id}",
                            json={"role": "ROLE_VIEWER", "active": True})
        assert demoted.status_code == 200, demoted.text
    with mesh.client(api_key=key) as client:
        body = assert_envelope(client.post("/api/v1/tools", json=tool()), 403,
                               "PERMISSION_DENIED")
        assert body["details"]["required_scope"] == "tools:write"
        body = assert_envelope(client.get("/api/v1/master-data/secrets"), 403,
                               "PERMISSION_DENIED")
        assert body["details"]["required_scope"] == "secrets:read"
        assert client.get("/api/v1/tools").status_code == 200  # what a viewer may still do
    with mesh.client(tenant.token) as admin:  # promoted back: the key's scopes return
        assert admin.put(f"/api/v1/auth/users/{user_id}",
                         json={"role": "ROLE_DEVELOPER", "active": True}).status_code == 200
    with mesh.client(api_key=key) as client:
        assert client.post("/api/v1/tools", json=tool()).status_code == 200
