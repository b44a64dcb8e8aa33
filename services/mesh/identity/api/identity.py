"""IdentityService: registration, sign-in and sessions, roles, the JWKS and revocation list,
users and API keys. Reads the request, calls the rules (mesh/identity/accounts.py, tokens.py,
apikeys.py) in one transaction, answers."""

from __future__ import annotations

import json

from google.api import httpbody_pb2
from sqlmodel import Session

from agentmesh.common.v1 import common_pb2
from agentmesh.identity.v1 import identity_pb2 as pb
from agentmesh.identity.v1 import identity_pb2_grpc as pb_grpc
from mesh.identity import accounts, apikeys, keys, security, tokens
from mesh.identity.models import ApiKeyRow, UserRow
from mesh.identity.roles import ROLE_DESCRIPTIONS, ROLES, scopes_for
from mesh.identity.state import IdentityState
from mesh.identity.store import api_key_message, api_keys, user_by_email, user_message, users
from mesh.runtime import audit, limits
from mesh.runtime.context import Caller, correlation_id, metadata_value, require_caller
from mesh.runtime.convert import changes, to_message
from mesh.runtime.errors import Unauthenticated, invalid_field
from mesh.runtime.paging import PageRequest
from mesh.runtime.service import Runtime
from mesh.runtime.tables import utcnow


def _client_ip(context) -> str:
    """The client address Envoy appended last to X-Forwarded-For (use_remote_address)."""
    forwarded = metadata_value(context, "x-forwarded-for")
    return forwarded.rsplit(",", 1)[-1].strip() if forwarded else ""


class IdentityService(pb_grpc.IdentityServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.db = runtime.database
        self.settings = runtime.settings
        state: IdentityState = runtime.state
        self.operators = state.operators
        self.revocations = state.revocations

    def _scopes(self, user: UserRow) -> list[str]:
        return accounts.user_scopes(user, self.operators)

    def _user(self, row: UserRow) -> pb.User:
        return user_message(row, self._scopes(row))

    def _issue(self, session: Session, user: UserRow) -> pb.TokenResponse:
        return tokens.issue(session, self.settings, user, self._scopes(user))

    # ---- sign-in and sessions ----------------------------------------------------------------
    async def Register(self, request: pb.RegisterRequest, context) -> pb.RegisterResponse:
        if not request.tenant_name.strip():
            raise invalid_field("tenant_name", "is required")
        email = accounts.check_email(request.email)
        accounts.check_password(request.password)
        password_hash = await accounts.hash_password(request.password)

        def register(session: Session) -> pb.RegisterResponse:
            tenant, user = accounts.register(session, self.operators, request.tenant_name.strip(),
                                             email, request.full_name, password_hash)
            session.flush()
            actor = Caller(tenant_id=tenant.id, user_id=user.id, correlation_id=correlation_id())
            audit.record(session, actor, "tenant.create", "tenant", tenant.id,
                         name=tenant.name)
            audit.record(session, actor, "user.create", "user", user.id, email=user.email,
                         role=user.role)
            issued = self._issue(session, user)
            return pb.RegisterResponse(tenant=to_message(tenant, pb.Tenant), user=self._user(user),
                                       access_token=issued.access_token,
                                       refresh_token=issued.refresh_token,
                                       token_type=issued.token_type, expires_in=issued.expires_in)

        return await self.db.write(register)

    async def Login(self, request: pb.LoginRequest, context) -> pb.TokenResponse:
        email = request.email.strip().lower()
        account, address = security.account_key(email), security.ip_key(_client_ip(context))

        def find(session: Session) -> UserRow | None:
            security.check_not_locked(session, [account, address])  # 429 before any hashing
            return user_by_email(session, email)

        user = await self.db.read(find)
        if not await accounts.password_matches(user, request.password) or not user.active:
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
            audit.record(session, Caller(tenant_id=row.tenant_id, user_id=row.id,
                                         correlation_id=correlation_id()),
                         "login", "user", row.id, email=row.email)
            return self._issue(session, row)

        return await self.db.write(login)

    async def Refresh(self, request: pb.RefreshRequest, context) -> pb.TokenResponse:
        if not request.refresh_token:
            raise invalid_field("refresh_token", "is required")
        issued = await self.db.write(lambda s: tokens.rotate(s, self.settings,
                                                             request.refresh_token, self._scopes))
        if issued is None:  # raised outside the transaction so that the revocation commits
            raise Unauthenticated("refresh token was already used; all its sessions are revoked",
                                  reason="REFRESH_TOKEN_REUSED")
        return issued

    async def Logout(self, request: pb.LogoutRequest, context) -> pb.LogoutResponse:
        caller = require_caller(context)
        if not request.refresh_token:
            raise invalid_field("refresh_token", "is required")
        await self.db.write(lambda s: tokens.sign_out(s, self.settings, caller.tenant_id,
                                                      caller.user_id, request.refresh_token))
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
            for role in ROLES])

    async def GetJwks(self, request, context) -> httpbody_pb2.HttpBody:
        document = await self.db.read(lambda s: keys.jwks(s, self.settings))
        return httpbody_pb2.HttpBody(content_type="application/json",
                                     data=json.dumps(document).encode())

    async def ListRevocations(self, request, context) -> pb.ListRevocationsResponse:
        """A long poll: held while `known_version` is current (mesh/runtime/watch.py)."""
        version, (users_not_before, sessions) = await self.revocations.poll(
            request.known_version, request.wait_seconds)
        reply = pb.ListRevocationsResponse(users_not_before=users_not_before,
                                           revoked_sessions=sessions, version=version)
        reply.generated_at.GetCurrentTime()
        return reply

    # ---- users -------------------------------------------------------------------------------
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
        email = accounts.check_email(request.user.email)
        accounts.check_password(request.user.password)
        role = accounts.check_role(request.user.role or pb.ROLE_VIEWER)
        password_hash = await accounts.hash_password(request.user.password)
        row = await self.db.write(lambda s: accounts.create_user(
            s, caller.tenant_id, email, request.user.full_name, role, password_hash))
        return self._user(row)

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
            update["role"] = accounts.check_role(pb.Role.Value(update["role"]))
        row = await self.db.write(lambda s: accounts.update_user(
            s, self.settings, caller.tenant_id, request.user_id, update))
        return self._user(row)

    async def DeleteUser(self, request: pb.DeleteUserRequest, context) -> common_pb2.DeleteResponse:
        caller = require_caller(context)
        email = await self.db.write(lambda s: accounts.delete_user(
            s, self.settings, caller.tenant_id, request.user_id))
        return common_pb2.DeleteResponse(success=True, message=f"user {email!r} deleted")

    # ---- API keys ----------------------------------------------------------------------------
    async def CreateApiKey(self, request: pb.CreateApiKeyRequest, context) -> pb.ApiKey:
        caller = require_caller(context)
        limits.check(request.api_key)
        row, key = apikeys.new_key(request.api_key, caller)
        return api_key_message(await self.db.write(lambda s: api_keys.add(s, row)), key)

    async def ListApiKeys(self, request: pb.ListApiKeysRequest, context) -> pb.ListApiKeysResponse:
        caller = require_caller(context)
        page = PageRequest.of(request)
        where = () if request.include_revoked else (ApiKeyRow.revoked_at.is_(None),)
        result = await self.db.read(lambda s: api_keys.list(s, caller.tenant_id, page, where=where))
        return pb.ListApiKeysResponse(**result.fields(api_key_message))

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
