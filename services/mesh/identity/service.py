"""The identity service: IdentityService, plus Envoy's ext_authz `Authorization` service for
`X-API-Key` requests (mesh/identity/api/)."""

from __future__ import annotations

from mesh.identity import keys
from mesh.identity.api.authorizer import ApiKeyAuthorizer
from mesh.identity.api.identity import IdentityService
from mesh.identity.models import (ApiKeyRow, LoginThrottleRow, RefreshTokenRow, SigningKeyRow,
                                  TenantRow, TokenRevocationRow, UserRow)
from mesh.identity.state import IdentityState
from mesh.runtime.service import Runtime, ServiceDefinition


async def _make_first_keys(runtime: Runtime) -> None:
    await runtime.database.write(keys.ensure_keys)


DEFINITION = ServiceDefinition("identity", servicers=[IdentityService, ApiKeyAuthorizer],
                               tables=[TenantRow, UserRow, RefreshTokenRow, ApiKeyRow,
                                       SigningKeyRow, TokenRevocationRow, LoginThrottleRow],
                               state=IdentityState, on_start=_make_first_keys)
