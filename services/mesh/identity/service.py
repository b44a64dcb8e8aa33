"""IdentityService, plus Envoy's ext_authz `Authorization` service for `X-API-Key` requests."""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import uuid
from datetime import UTC, timedelta

import argon2
from google.api import httpbody_pb2
from google.protobuf import struct_pb2
from google.rpc import code_pb2, status_pb2
from sqlmodel import Session, func, select

from agentmesh.common.v1 import common_pb2
from agentmesh.identity.v1 import identity_pb2 as pb
from agentmesh.identity.v1 import identity_pb2_grpc as pb_grpc
from agentmesh.thirdparty.envoy.config.core.v3 import base_pb2
from agentmesh.thirdparty.envoy.service.auth.v3 import external_auth_pb2 as authz
from agentmesh.thirdparty.envoy.service.auth.v3 import external_auth_pb2_grpc as authz_grpc
from agentmesh.thirdparty.envoy.type.v3 import http_status_pb2
from mesh import contract as contract_mod
from mesh.identity import keys, security
from mesh.identity.models import (ApiKeyRow, LoginThrottleRow, RefreshTokenRow, SigningKeyRow,
                                  TenantRow, TokenRevocationRow, UserRow)
from mesh.identity.roles import (ROLE_DESCRIPTIONS, ROLE_SCOPES, covers, effective_scopes,
                                 scopes_for)
from mesh.runtime import limits
from mesh.runtime.context import metadata_value, require_caller
from mesh.runtime.context import API_KEY_HEADER, SCOPES_HEADER, TENANT_HEADER, USER_HEADER
from mesh.runtime.db import serialize
from mesh.runtime.convert import changes, to_message
from mesh.runtime.errors import (AlreadyExists, FailedPrecondition, InvalidArgument, NotFound,
                                 PermissionDenied, Unauthenticated, invalid_field)
from mesh.runtime.paging import PageRequest
from mesh.runtime.repository import TenantRepository
from mesh.runtime.service import Runtime, ServiceDefinition
from mesh.runtime.tables import aware, utcnow

_hasher = argon2.PasswordHasher()
# Checked against on unknown emails too, so a login takes as long whether or not the email exists.
_DUMMY_HASH = _hasher.hash("not-a-real-password")
API_KEY_PREFIX = "amk_"

users = TenantRepository(UserRow, noun="user", name_column=None,
                         search_columns=("email", "full_name"), order_columns=("email",), quota="resource")
api_keys = TenantRepository(ApiKeyRow, noun="api_key", quota="resource")


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class Operators:
    """The tenants that operate the platform (settings.operator_tenants by name, else the first
    tenant registered): their admins hold `platform:read` and `system:write`. Resolved once per
    process; the first tenant never changes, and named tenants are looked up until every one
    exists."""

    def __init__(self, database, settings) -> None:
        self.db = database
        self.names = {n.strip().lower() for n in settings.operator_tenants.split(",") if n.strip()}
        self.ids: set[str] = set()
        self._complete = False

    def refresh(self, session: Session) -> None:
        if self.names:
            rows = session.exec(select(TenantRow.id).where(
                func.lower(TenantRow.name).in_(sorted(self.names)))).all()
            self.ids, self._complete = set(rows), len(rows) == len(self.names)
        else:
            first = session.exec(select(TenantRow.id).order_by(TenantRow.created_at,
                                                               TenantRow.id).limit(1)).first()
            self.ids, self._complete = ({first} if first else set()), first is not None

    def __contains__(self, tenant_id: str) -> bool:
        if not self._complete and tenant_id not in self.ids:
            with self.db.session() as session:  # once per process, or until they all exist
                self.refresh(session)
        return tenant_id in self.ids


def _role_scopes(role: str, operator: bool) -> list[str]:
    return list(scopes_for(pb.Role.Value(role), operator))


def _api_key(row: ApiKeyRow, key: str = "") -> pb.ApiKey:
    return to_message(row, pb.ApiKey, key=key or None)


def _check_email(email: str) -> str:
    email = email.strip().lower()
    if "@" not in email or len(email) > 254 or email.startswith("@") or email.endswith("@"):
        raise invalid_field("email", "must be an email address")
    return email


def _check_password(password: str) -> None:
    if len(password) < 8:
        raise invalid_field("password", "must be at least 8 characters")


def known_scopes() -> set[str]:
    """Every scope an API key may name: each RPC's scope, `area:*` for each area, and `*`."""
    scopes = {rpc.scope for rpc in contract_mod.default().rpcs if rpc.scope}
    return scopes | {f"{s.split(':', 1)[0]}:*" for s in scopes} | {"*"}


def _client_ip(context) -> str:
    """The client address Envoy appended last to X-Forwarded-For (use_remote_address)."""
    forwarded = metadata_value(context, "x-forwarded-for")
    return forwarded.rsplit(",", 1)[-1].strip() if forwarded else ""


def _check_role(role: int) -> str:
    if role not in ROLE_SCOPES:
        raise invalid_field("role", "must be ROLE_ADMIN, ROLE_DEVELOPER, ROLE_USER or "
                            "ROLE_VIEWER")
    return pb.Role.Name(role)


class IdentityService(pb_grpc.IdentityServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.db = runtime.database
        self.settings = runtime.settings
        self.operators = Operators(runtime.database, runtime.settings)

    def _scopes(self, user: UserRow) -> list[str]:
        return _role_scopes(user.role, user.tenant_id in self.operators)

    def _user(self, row: UserRow) -> pb.User:
        return to_message(row, pb.User, scopes=self._scopes(row), password=None)

    # ---- tokens --------------------------------------------------------------------------
    def _issue(self, session: Session, user: UserRow, family_id: str | None = None) -> pb.TokenResponse:
        key = keys.active_key(session, self.settings)
        family_id = family_id or uuid.uuid4().hex
        access = keys.issue_access_token(key, self.settings, user_id=user.id,
                                         tenant_id=user.tenant_id, role=user.role,
                                         scopes=self._scopes(user), session_id=family_id,
                                         not_before=security.user_not_before(session, user.id))
        refresh = secrets.token_urlsafe(32)
        now = utcnow()
        session.add(RefreshTokenRow(
            token_hash=_sha256(refresh), family_id=family_id,
            user_id=user.id, tenant_id=user.tenant_id, created_at=now,
            expires_at=now + timedelta(seconds=self.settings.refresh_token_ttl_seconds)))
        session.flush()
        return pb.TokenResponse(access_token=access, refresh_token=refresh, token_type="Bearer",
                                expires_in=self.settings.access_token_ttl_seconds)

    async def Register(self, request: pb.RegisterRequest, context) -> pb.RegisterResponse:
        if not request.tenant_name.strip():
            raise invalid_field("tenant_name", "is required")
        email = _check_email(request.email)
        _check_password(request.password)
        password_hash = await asyncio.to_thread(_hasher.hash, request.password)

        tenant_name = request.tenant_name.strip()

        def register(session: Session) -> pb.RegisterResponse:
            # One answer for a taken email and a taken tenant name, naming neither value: the
            # caller learns only that one of its two values is in use (docs/threat-model.md:
            # Register signs the new admin in, so it cannot answer the same way in both cases).
            taken = session.exec(select(UserRow).where(UserRow.email == email)).first() or \
                session.exec(select(TenantRow).where(
                    func.lower(TenantRow.name) == tenant_name.lower())).first()
            if taken:
                raise AlreadyExists("cannot register with this email and tenant name; sign in, "
                                    "or choose another tenant name",
                                    reason="REGISTRATION_CONFLICT")
            now = utcnow()
            tenant = TenantRow(name=tenant_name, created_at=now, updated_at=now)
            session.add(tenant)
            session.flush()
            if not self.operators._complete:
                serialize(session, "identity-first-tenant")  # one first tenant, even in a race
                self.operators.refresh(session)
            user = users.add(session, UserRow(tenant_id=tenant.id, email=email,
                                              full_name=request.full_name, role="ROLE_ADMIN",
                                              password_hash=password_hash))
            tokens = self._issue(session, user)
            return pb.RegisterResponse(tenant=to_message(tenant, pb.Tenant), user=self._user(user),
                                       access_token=tokens.access_token,
                                       refresh_token=tokens.refresh_token,
                                       token_type=tokens.token_type, expires_in=tokens.expires_in)

        return await self.db.write(register)

    async def Login(self, request: pb.LoginRequest, context) -> pb.TokenResponse:
        email = request.email.strip().lower()
        account, address = security.account_key(email), security.ip_key(_client_ip(context))

        def find(session: Session) -> UserRow | None:
            security.check_not_locked(session, [account, address])  # 429 before any hashing
            return session.exec(select(UserRow).where(UserRow.email == email)).first()

        user = await self.db.read(find)
        try:  # always one Argon2 verification: the same time for unknown emails
            await asyncio.to_thread(_hasher.verify, user.password_hash if user else _DUMMY_HASH,
                                    request.password)
        except argon2.exceptions.VerificationError:
            user = None
        if user is None or not user.active:
            def failed(session: Session) -> None:
                security.record_failure(session, self.settings, account,
                                        self.settings.login_free_failures_per_account)
                security.record_failure(session, self.settings, address,
                                        self.settings.login_free_failures_per_ip)

            await self.db.write(failed)
            raise Unauthenticated("wrong email or password", reason="INVALID_CREDENTIALS")

        def login(session: Session) -> pb.TokenResponse:
            security.clear(session, account)
            row = session.get(UserRow, user.id)
            row.last_login_at = utcnow()
            session.add(row)
            return self._issue(session, row)

        return await self.db.write(login)

    async def Refresh(self, request: pb.RefreshRequest, context) -> pb.TokenResponse:
        if not request.refresh_token:
            raise invalid_field("refresh_token", "is required")
        token_hash = _sha256(request.refresh_token)

        def refresh(session: Session) -> pb.TokenResponse | None:
            row = session.exec(select(RefreshTokenRow).with_for_update()
                               .where(RefreshTokenRow.token_hash == token_hash)).first()
            if row is None or aware(row.expires_at) < utcnow():
                raise Unauthenticated("refresh token is invalid or expired",
                                      reason="INVALID_REFRESH_TOKEN")
            if row.revoked_at is not None:
                # Reuse of a rotated token: someone else may hold it. Revoke the family.
                for other in session.exec(select(RefreshTokenRow).where(
                        RefreshTokenRow.family_id == row.family_id,
                        RefreshTokenRow.revoked_at.is_(None))).all():
                    other.revoked_at = utcnow()
                    session.add(other)
                security.revoke_session(session, self.settings, row.family_id)
                return None
            user = session.get(UserRow, row.user_id)
            if user is None or not user.active:
                raise Unauthenticated("user is gone or inactive", reason="INVALID_REFRESH_TOKEN")
            row.revoked_at = utcnow()
            session.add(row)
            return self._issue(session, user, family_id=row.family_id)

        tokens = await self.db.write(refresh)
        if tokens is None:  # raised outside the transaction so that the revocation commits
            raise Unauthenticated("refresh token was already used; all its sessions are revoked",
                                  reason="REFRESH_TOKEN_REUSED")
        return tokens

    async def Logout(self, request: pb.LogoutRequest, context) -> pb.LogoutResponse:
        caller = require_caller(context)
        if not request.refresh_token:
            raise invalid_field("refresh_token", "is required")
        token_hash = _sha256(request.refresh_token)

        def logout(session: Session) -> None:
            row = session.exec(select(RefreshTokenRow).where(
                RefreshTokenRow.token_hash == token_hash,
                RefreshTokenRow.tenant_id == caller.tenant_id,
                RefreshTokenRow.user_id == caller.user_id)).first()
            if row is None:  # another user's or tenant's token, or none at all: nothing revoked
                raise NotFound("no session of yours has this refresh token",
                               reason="SESSION_NOT_FOUND")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
                session.add(row)
            # The session's access tokens (claim `sid`) are refused within seconds too.
            security.revoke_session(session, self.settings, row.family_id)

        await self.db.write(logout)
        return pb.LogoutResponse(success=True, message="session signed out; its tokens are revoked")

    async def GetMe(self, request, context) -> pb.User:
        caller = require_caller(context)
        row = await self.db.read(lambda s: users.get(s, caller.tenant_id, caller.user_id))
        return self._user(row)

    async def ListRoles(self, request, context) -> pb.ListRolesResponse:
        """The roles as they are in the caller's tenant: an admin's scopes differ between an
        operator tenant (`*`) and any other (no `platform:read`, no `system:write`)."""
        operator = require_caller(context).tenant_id in self.operators
        return pb.ListRolesResponse(items=[
            pb.RoleInfo(role=role, description=ROLE_DESCRIPTIONS[role],
                        scopes=scopes_for(role, operator))
            for role in ROLE_SCOPES])

    async def GetJwks(self, request, context) -> httpbody_pb2.HttpBody:
        document = await self.db.read(lambda s: keys.jwks(s, self.settings))
        return httpbody_pb2.HttpBody(content_type="application/json",
                                     data=json.dumps(document).encode())

    async def ListRevocations(self, request, context) -> pb.ListRevocationsResponse:
        users_not_before, sessions = await self.db.read(security.revocations)
        reply = pb.ListRevocationsResponse(users_not_before=users_not_before,
                                           revoked_sessions=sessions)
        reply.generated_at.GetCurrentTime()
        return reply

    # ---- users ---------------------------------------------------------------------------
    async def ListUsers(self, request: pb.ListUsersRequest, context) -> pb.ListUsersResponse:
        caller = require_caller(context)
        page = PageRequest.of(request)
        role = pb.Role.Name(request.role) if request.role else None
        result = await self.db.read(lambda s: users.list(
            s, caller.tenant_id, page, filters={"role": role}, search=request.search))
        return pb.ListUsersResponse(**result.fields(self._user))

    async def CreateUser(self, request: pb.CreateUserRequest, context) -> pb.User:
        caller = require_caller(context)
        limits.check(request.user)
        email = _check_email(request.user.email)
        _check_password(request.user.password)
        role = _check_role(request.user.role or pb.ROLE_VIEWER)
        password_hash = await asyncio.to_thread(_hasher.hash, request.user.password)

        def create(session: Session) -> UserRow:
            if session.exec(select(UserRow).where(UserRow.email == email)).first():
                raise AlreadyExists(f"a user with email {email!r} already exists",
                                    reason="EMAIL_TAKEN", details={"email": email})
            return users.add(session, UserRow(tenant_id=caller.tenant_id, email=email,
                                              full_name=request.user.full_name, role=role,
                                              active=True, password_hash=password_hash))

        return self._user(await self.db.write(create))

    async def GetUser(self, request: pb.GetUserRequest, context) -> pb.User:
        caller = require_caller(context)
        return self._user(await self.db.read(lambda s: users.get(s, caller.tenant_id, request.user_id)))

    async def UpdateUser(self, request: pb.UpdateUserRequest, context) -> pb.User:
        caller = require_caller(context)
        limits.check(request.user)
        update = changes(request.user, {"full_name", "role", "active"},
                         list(request.update_mask.paths))
        if update.get("role") == "ROLE_UNSPECIFIED":  # proto3's "not set", as on create
            del update["role"]
        if "role" in update:
            update["role"] = _check_role(pb.Role.Value(update["role"]))

        def apply(session: Session) -> UserRow:
            row = users.get(session, caller.tenant_id, request.user_id, lock=True)
            demoting = row.role == "ROLE_ADMIN" and (
                update.get("role", "ROLE_ADMIN") != "ROLE_ADMIN" or update.get("active") is False)
            if demoting:
                self._keep_an_admin(session, caller.tenant_id, row.id)
            if all(getattr(row, key) == value for key, value in update.items()):
                return row  # a no-op update changes nothing, not even updated_at
            # Tokens carry the role's scopes and outlive a deactivation: refuse them now.
            if update.get("active") is False or update.get("role", row.role) != row.role:
                security.revoke_user(session, self.settings, row.id)
            if update.get("active") is False:
                self._revoke_refresh_tokens(session, row.id)
            for key, value in update.items():
                setattr(row, key, value)
            return users.save(session, row)

        return self._user(await self.db.write(apply))

    @staticmethod
    def _revoke_refresh_tokens(session: Session, user_id: str) -> None:
        for token in session.exec(select(RefreshTokenRow).where(
                RefreshTokenRow.user_id == user_id, RefreshTokenRow.revoked_at.is_(None))).all():
            token.revoked_at = utcnow()
            session.add(token)

    @staticmethod
    def _keep_an_admin(session: Session, tenant_id: str, leaving: str) -> None:
        others = session.exec(select(UserRow).where(
            UserRow.tenant_id == tenant_id, UserRow.role == "ROLE_ADMIN",
            UserRow.active.is_(True), UserRow.id != leaving)).first()
        if others is None:
            raise FailedPrecondition("a tenant must keep at least one active admin",
                                     reason="LAST_ADMIN")

    async def DeleteUser(self, request: pb.DeleteUserRequest, context) -> common_pb2.DeleteResponse:
        caller = require_caller(context)

        def remove(session: Session) -> str:
            row = users.get(session, caller.tenant_id, request.user_id, lock=True)
            if row.role == "ROLE_ADMIN":
                self._keep_an_admin(session, caller.tenant_id, row.id)
            self._revoke_refresh_tokens(session, row.id)
            security.revoke_user(session, self.settings, row.id)
            users.delete(session, row)
            return row.email

        email = await self.db.write(remove)
        return common_pb2.DeleteResponse(success=True, message=f"user {email!r} deleted")

    # ---- API keys ------------------------------------------------------------------------
    async def CreateApiKey(self, request: pb.CreateApiKeyRequest, context) -> pb.ApiKey:
        caller = require_caller(context)
        spec = request.api_key
        limits.check(spec)
        if not spec.name.strip():
            raise invalid_field("name", "is required")
        if not spec.scopes:
            raise invalid_field("scopes", "name at least one scope, such as agents:read")
        unknown = sorted(set(spec.scopes) - known_scopes())
        if unknown:
            raise InvalidArgument(f"unknown scopes: {', '.join(unknown)}", reason="UNKNOWN_SCOPE",
                                  details={"scopes": ",".join(unknown)},
                                  field_violations=[("scopes", f"unknown: {', '.join(unknown)}")])
        expires_at = spec.expires_at.ToDatetime(tzinfo=UTC) if spec.HasField("expires_at") else None
        if expires_at is not None and expires_at <= utcnow():
            raise invalid_field("expires_at", "must be in the future")
        beyond = [s for s in spec.scopes if not covers(caller.scopes, s)]
        if beyond:
            raise PermissionDenied(f"cannot grant scopes you do not hold: {', '.join(beyond)}",
                                   reason="SCOPE_NOT_HELD", details={"scopes": ",".join(beyond)})
        key = API_KEY_PREFIX + secrets.token_urlsafe(32)
        row = ApiKeyRow(tenant_id=caller.tenant_id, name=spec.name.strip(), key_hash=_sha256(key),
                        prefix=key[:12], scopes=sorted(set(spec.scopes)), created_by=caller.user_id,
                        expires_at=expires_at)
        return _api_key(await self.db.write(lambda s: api_keys.add(s, row)), key)

    async def ListApiKeys(self, request: pb.ListApiKeysRequest, context) -> pb.ListApiKeysResponse:
        caller = require_caller(context)
        page = PageRequest.of(request)

        where = () if request.include_revoked else (ApiKeyRow.revoked_at.is_(None),)
        result = await self.db.read(lambda s: api_keys.list(s, caller.tenant_id, page, where=where))
        return pb.ListApiKeysResponse(**result.fields(_api_key))

    async def RevokeApiKey(self, request: pb.RevokeApiKeyRequest, context) -> common_pb2.DeleteResponse:
        caller = require_caller(context)

        def revoke(session: Session) -> str:
            row = api_keys.get(session, caller.tenant_id, request.api_key_id, lock=True)
            if row.revoked_at is None:
                row.revoked_at = utcnow()
                api_keys.save(session, row)
            return row.name

        name = await self.db.write(revoke)
        return common_pb2.DeleteResponse(success=True, message=f"API key {name!r} revoked")


class ApiKeyAuthorizer(authz_grpc.AuthorizationServicer):
    """Envoy ext_authz for requests that carry `X-API-Key` (the gateway calls it only for those).
    It authenticates the key; the scope check itself stays in Envoy's RBAC rules, which read the
    scopes this returns as dynamic metadata."""

    def __init__(self, runtime: Runtime) -> None:
        self.db = runtime.database
        self.operators = Operators(runtime.database, runtime.settings)

    @staticmethod
    def _deny(message: str) -> authz.CheckResponse:
        return authz.CheckResponse(
            status=status_pb2.Status(code=code_pb2.UNAUTHENTICATED),
            denied_response=authz.DeniedHttpResponse(
                status=http_status_pb2.HttpStatus(code=http_status_pb2.Unauthorized),
                body=message))

    async def Check(self, request: authz.CheckRequest, context) -> authz.CheckResponse:
        key = request.attributes.request.http.headers.get("x-api-key", "")
        if not key.startswith(API_KEY_PREFIX):
            return self._deny("invalid API key")
        found = await self.db.read(lambda s: s.exec(
            select(ApiKeyRow, UserRow)
            .join(UserRow, UserRow.id == ApiKeyRow.created_by, isouter=True)
            .where(ApiKeyRow.key_hash == _sha256(key))).first())
        row, creator = found if found else (None, None)
        now = utcnow()
        if row is None or row.revoked_at is not None or (
                row.expires_at is not None and aware(row.expires_at) < now):
            return self._deny("invalid, revoked or expired API key")
        # A key acts for its creator: it dies with them (deleted, deactivated, other tenant).
        if creator is None or not creator.active or creator.tenant_id != row.tenant_id:
            return self._deny("invalid, revoked or expired API key")
        # A key never does more than its creator may do now: a demoted creator's keys lose
        # what the new role lacks on their next request (computed here, per request).
        scopes = effective_scopes(row.scopes, scopes_for(pb.Role.Value(creator.role),
                                                         creator.tenant_id in self.operators))
        metadata = struct_pb2.Struct()
        metadata.update({"scopes": scopes, "tenant_id": row.tenant_id})

        def header(name: str, value: str) -> base_pb2.HeaderValueOption:
            return base_pb2.HeaderValueOption(
                header=base_pb2.HeaderValue(key=name, value=value),
                append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD)

        return authz.CheckResponse(
            status=status_pb2.Status(code=code_pb2.OK),
            dynamic_metadata=metadata,
            ok_response=authz.OkHttpResponse(headers=[
                header(TENANT_HEADER, row.tenant_id),
                header(USER_HEADER, row.created_by),
                header(SCOPES_HEADER, " ".join(scopes)),
                header(API_KEY_HEADER, row.id),
            ]))


async def _make_first_keys(runtime: Runtime) -> None:
    await runtime.database.write(keys.ensure_keys)


DEFINITION = ServiceDefinition("identity", servicers=[IdentityService, ApiKeyAuthorizer],
                               tables=[TenantRow, UserRow, RefreshTokenRow, ApiKeyRow, SigningKeyRow,
                                       TokenRevocationRow, LoginThrottleRow],
                               on_start=_make_first_keys)
