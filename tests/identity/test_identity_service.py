"""The identity service alone, in-process: who operates the platform, the scopes a role puts in
a token, what an API key may hold and what it acts as, sessions, login throttling and the last
admin, asserted by gRPC code and reason."""

from __future__ import annotations

import uuid

import grpc
import jwt
import pytest

from agentmesh.identity.v1 import identity_pb2 as pb
from agentmesh.identity.v1 import identity_pb2_grpc as pb_grpc
from agentmesh.thirdparty.envoy.service.auth.v3 import external_auth_pb2 as authz
from agentmesh.thirdparty.envoy.service.auth.v3 import external_auth_pb2_grpc as authz_grpc
from mesh.identity.roles import scopes_for, tenant_admin_scopes
from mesh.identity.service import DEFINITION
from mesh.runtime.context import SCOPES_HEADER
from tests.harness import Identity, ServiceHarness, error_reason

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def identity(tmp_path_factory):
    with ServiceHarness(DEFINITION, tmp_path_factory.mktemp("identity"),
                        login_free_failures_per_account=2,
                        login_backoff_base_seconds=60) as harness:
        # The first tenant registered operates the platform (no AGENTMESH_OPERATOR_TENANTS).
        harness.operator = _register(harness, "operators")
        yield harness


def _stub(identity) -> pb_grpc.IdentityServiceStub:
    return identity.stub(pb_grpc.IdentityServiceStub)


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def _register(identity, tenant_name: str | None = None) -> pb.RegisterResponse:
    return _stub(identity).Register(pb.RegisterRequest(
        tenant_name=tenant_name or f"tenant-{uuid.uuid4().hex[:8]}",
        email=f"{uuid.uuid4().hex[:8]}@example.com", password=PASSWORD, full_name="Ada"))


def _as(user: pb.User, scopes=None) -> Identity:
    """The gateway's headers for a call by `user` (its own scopes unless others are named)."""
    return Identity(tenant_id=user.tenant_id, user_id=user.id,
                    scopes=" ".join(scopes if scopes is not None else user.scopes))


def _ip() -> tuple[tuple[str, str], ...]:
    """A client address of its own, so that one test's failed logins never lock another's."""
    return (("x-forwarded-for", f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.7"),)


def _add_user(identity, admin: Identity, role: int) -> pb.User:
    return _stub(identity).CreateUser(pb.CreateUserRequest(user=pb.User(
        email=f"{uuid.uuid4().hex[:8]}@example.com", password=PASSWORD, role=role)),
        metadata=admin.metadata())


def _login(identity, email: str, password: str = PASSWORD, metadata=()) -> pb.TokenResponse:
    return _stub(identity).Login(pb.LoginRequest(email=email, password=password),
                                 metadata=metadata or _ip())


def _check(identity, key: str) -> authz.CheckResponse:
    request = authz.CheckRequest()
    request.attributes.request.http.headers["x-api-key"] = key
    return identity.stub(authz_grpc.AuthorizationStub).Check(request)


def _forwarded(answer: authz.CheckResponse) -> dict[str, str]:
    return {h.header.key: h.header.value for h in answer.ok_response.headers}


def test_only_the_operator_tenants_admin_holds_everything(identity):
    operator = identity.operator
    assert list(operator.user.scopes) == ["*"] and _claims(operator.access_token)["scopes"] == ["*"]
    other = _register(identity)
    assert list(other.user.scopes) == list(tenant_admin_scopes())
    assert "system:write" not in other.user.scopes and "platform:read" not in other.user.scopes
    roles = _stub(identity).ListRoles(pb.ListRolesRequest(), metadata=_as(other.user).metadata())
    shown = {r.role: list(r.scopes) for r in roles.items}
    assert list(shown) == [pb.ROLE_ADMIN, pb.ROLE_DEVELOPER, pb.ROLE_VIEWER, pb.ROLE_USER]
    assert shown[pb.ROLE_ADMIN] == list(tenant_admin_scopes())
    assert shown[pb.ROLE_VIEWER] == list(scopes_for(pb.ROLE_VIEWER, operator=False))
    mine = _stub(identity).ListRoles(pb.ListRolesRequest(),
                                     metadata=_as(operator.user).metadata())
    assert [list(r.scopes) for r in mine.items if r.role == pb.ROLE_ADMIN] == [["*"]]


@pytest.mark.parametrize("role", [pb.ROLE_DEVELOPER, pb.ROLE_VIEWER, pb.ROLE_USER])
def test_a_users_token_carries_its_roles_scopes(identity, role):
    admin = _as(_register(identity).user)
    user = _add_user(identity, admin, role)
    claims = _claims(_login(identity, user.email).access_token)
    assert claims["scopes"] == list(scopes_for(role, operator=False)) == list(user.scopes)
    assert claims["scope"] == " ".join(claims["scopes"]) and claims["tid"] == user.tenant_id


def test_registering_a_taken_email_or_tenant_name_is_one_conflict(identity):
    first = _register(identity)
    taken = (pb.RegisterRequest(tenant_name="fresh-" + uuid.uuid4().hex[:8],
                                email=first.user.email, password=PASSWORD),
             pb.RegisterRequest(tenant_name=first.tenant.name.upper(),
                                email=f"{uuid.uuid4().hex[:8]}@example.com", password=PASSWORD))
    for request in taken:
        with pytest.raises(grpc.RpcError) as refused:
            _stub(identity).Register(request)
        assert refused.value.code() == grpc.StatusCode.ALREADY_EXISTS
        assert error_reason(refused.value) == "REGISTRATION_CONFLICT"


def test_an_api_key_holds_only_known_scopes_its_creator_holds(identity):
    admin = _as(_register(identity).user)
    developer = _as(_add_user(identity, admin, pb.ROLE_DEVELOPER))
    for scopes, code, reason in ((["users:read"], grpc.StatusCode.PERMISSION_DENIED,
                                  "SCOPE_NOT_HELD"),
                                 (["*"], grpc.StatusCode.PERMISSION_DENIED, "SCOPE_NOT_HELD"),
                                 (["reports:read"], grpc.StatusCode.INVALID_ARGUMENT,
                                  "UNKNOWN_SCOPE")):
        with pytest.raises(grpc.RpcError) as refused:
            _stub(identity).CreateApiKey(pb.CreateApiKeyRequest(
                api_key=pb.ApiKey(name="k-" + uuid.uuid4().hex[:6], scopes=scopes)),
                metadata=developer.metadata())
        assert (refused.value.code(), error_reason(refused.value)) == (code, reason), scopes
    made = _stub(identity).CreateApiKey(pb.CreateApiKeyRequest(
        api_key=pb.ApiKey(name="builder", scopes=["tools:*", "secrets:read"])),
        metadata=developer.metadata())
    assert made.key.startswith("amk_") and list(made.scopes) == ["secrets:read", "tools:*"]


def test_a_key_acts_as_its_creator_with_what_the_creator_still_holds(identity):
    owner = _register(identity).user
    admin = _as(owner)
    developer = _add_user(identity, admin, pb.ROLE_DEVELOPER)
    made = _stub(identity).CreateApiKey(pb.CreateApiKeyRequest(
        api_key=pb.ApiKey(name="ci", scopes=["tools:*", "secrets:read"])),
        metadata=_as(developer).metadata())
    allowed = _check(identity, made.key)
    assert allowed.status.code == 0
    headers = _forwarded(allowed)
    assert headers[SCOPES_HEADER] == "secrets:read tools:*"
    assert (headers["x-agentmesh-tenant-id"], headers["x-agentmesh-user-id"]) == \
        (owner.tenant_id, developer.id)
    assert headers["x-agentmesh-api-key-id"] == made.id

    # Demoted to viewer: the key keeps only the viewer's part of `tools:*`, no secrets.
    _stub(identity).UpdateUser(pb.UpdateUserRequest(
        user_id=developer.id, user=pb.User(role=pb.ROLE_VIEWER),
        update_mask={"paths": ["role"]}), metadata=admin.metadata())
    assert _forwarded(_check(identity, made.key))[SCOPES_HEADER] == "tools:read"

    # Deactivated: the key no longer authenticates.
    _stub(identity).UpdateUser(pb.UpdateUserRequest(
        user_id=developer.id, user=pb.User(active=False), update_mask={"paths": ["active"]}),
        metadata=admin.metadata())
    assert _check(identity, made.key).status.code == grpc.StatusCode.UNAUTHENTICATED.value[0]


def test_a_revoked_or_unknown_key_is_refused(identity):
    admin = _as(_register(identity).user)
    made = _stub(identity).CreateApiKey(pb.CreateApiKeyRequest(
        api_key=pb.ApiKey(name="once", scopes=["agents:read"])), metadata=admin.metadata())
    _stub(identity).RevokeApiKey(pb.RevokeApiKeyRequest(api_key_id=made.id),
                                 metadata=admin.metadata())
    for key in (made.key, "amk_" + "x" * 43, "not-a-key"):
        refused = _check(identity, key)
        assert refused.status.code == grpc.StatusCode.UNAUTHENTICATED.value[0]
        assert refused.denied_response.status.code == 401


def test_failed_logins_lock_the_account_even_for_the_right_password(identity):
    user = _register(identity).user
    for _ in range(2):  # the free failures; the second locks
        with pytest.raises(grpc.RpcError) as wrong:
            _login(identity, user.email, "wrong password")
        assert error_reason(wrong.value) == "INVALID_CREDENTIALS"
        assert wrong.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as locked:
        _login(identity, user.email)
    assert locked.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_reason(locked.value) == "LOGIN_THROTTLED"
    # The wait, as gRPC says it: google.rpc.RetryInfo in the status details (no trailer of
    # our own; the gateway turns the envelope's retry_after into REST's Retry-After)
    from mesh.runtime.errors import retry_delay
    assert 1 <= retry_delay(locked.value) <= 60
    assert "retry-after" not in dict(locked.value.trailing_metadata())


def test_an_unknown_email_fails_like_a_wrong_password(identity):
    with pytest.raises(grpc.RpcError) as unknown:
        _login(identity, f"{uuid.uuid4().hex[:8]}@example.com")
    assert unknown.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_reason(unknown.value) == "INVALID_CREDENTIALS"


def test_a_reused_refresh_token_ends_its_whole_session(identity):
    user = _register(identity).user
    first = _login(identity, user.email)
    second = _stub(identity).Refresh(pb.RefreshRequest(refresh_token=first.refresh_token))
    assert _claims(second.access_token)["sid"] == _claims(first.access_token)["sid"]
    for spent in (first.refresh_token, second.refresh_token):
        with pytest.raises(grpc.RpcError) as reused:
            _stub(identity).Refresh(pb.RefreshRequest(refresh_token=spent))
        assert reused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert error_reason(reused.value) == "REFRESH_TOKEN_REUSED"
    revoked = _stub(identity).ListRevocations(pb.ListRevocationsRequest())
    assert _claims(first.access_token)["sid"] in revoked.revoked_sessions


def test_signing_out_needs_a_session_of_ones_own(identity):
    user = _register(identity).user
    other = _register(identity).user
    tokens = _login(identity, user.email)
    with pytest.raises(grpc.RpcError) as foreign:
        _stub(identity).Logout(pb.LogoutRequest(refresh_token=tokens.refresh_token),
                               metadata=_as(other).metadata())
    assert foreign.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_reason(foreign.value) == "SESSION_NOT_FOUND"
    _stub(identity).Logout(pb.LogoutRequest(refresh_token=tokens.refresh_token),
                           metadata=_as(user).metadata())
    with pytest.raises(grpc.RpcError) as ended:
        _stub(identity).Refresh(pb.RefreshRequest(refresh_token=tokens.refresh_token))
    assert error_reason(ended.value) == "REFRESH_TOKEN_REUSED"


def test_a_tenant_keeps_an_active_admin(identity):
    owner = _register(identity).user
    admin = _as(owner)
    for request in (pb.UpdateUserRequest(user_id=owner.id, user=pb.User(role=pb.ROLE_VIEWER),
                                         update_mask={"paths": ["role"]}),
                    pb.UpdateUserRequest(user_id=owner.id, user=pb.User(active=False),
                                         update_mask={"paths": ["active"]})):
        with pytest.raises(grpc.RpcError) as refused:
            _stub(identity).UpdateUser(request, metadata=admin.metadata())
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert error_reason(refused.value) == "LAST_ADMIN"
    with pytest.raises(grpc.RpcError) as deleting:
        _stub(identity).DeleteUser(pb.DeleteUserRequest(user_id=owner.id),
                                   metadata=admin.metadata())
    assert error_reason(deleting.value) == "LAST_ADMIN"
    second = _add_user(identity, admin, pb.ROLE_ADMIN)
    demoted = _stub(identity).UpdateUser(pb.UpdateUserRequest(
        user_id=owner.id, user=pb.User(role=pb.ROLE_VIEWER), update_mask={"paths": ["role"]}),
        metadata=_as(second).metadata())
    assert demoted.role == pb.ROLE_VIEWER
    assert list(demoted.scopes) == list(scopes_for(pb.ROLE_VIEWER, operator=False))


def test_a_new_user_gets_a_known_role_and_a_unique_email(identity):
    admin = _as(_register(identity).user)
    made = _stub(identity).CreateUser(pb.CreateUserRequest(user=pb.User(
        email=f"{uuid.uuid4().hex[:8]}@Example.COM", password=PASSWORD)),
        metadata=admin.metadata())
    assert made.role == pb.ROLE_VIEWER and made.email.endswith("@example.com")
    with pytest.raises(grpc.RpcError) as again:
        _stub(identity).CreateUser(pb.CreateUserRequest(user=pb.User(
            email=made.email, password=PASSWORD)), metadata=admin.metadata())
    assert (again.value.code(), error_reason(again.value)) == \
        (grpc.StatusCode.ALREADY_EXISTS, "EMAIL_TAKEN")
    with pytest.raises(grpc.RpcError) as short:
        _stub(identity).CreateUser(pb.CreateUserRequest(user=pb.User(
            email=f"{uuid.uuid4().hex[:8]}@example.com", password="short")),
            metadata=admin.metadata())
    assert short.value.code() == grpc.StatusCode.INVALID_ARGUMENT
