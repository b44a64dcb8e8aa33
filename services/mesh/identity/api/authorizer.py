"""Envoy's ext_authz `Authorization` service, for requests that carry `X-API-Key`."""

from __future__ import annotations

from google.protobuf import struct_pb2
from google.rpc import code_pb2, status_pb2

from agentmesh.thirdparty.envoy.config.core.v3 import base_pb2
from agentmesh.thirdparty.envoy.service.auth.v3 import external_auth_pb2 as authz
from agentmesh.thirdparty.envoy.service.auth.v3 import external_auth_pb2_grpc as authz_grpc
from agentmesh.thirdparty.envoy.type.v3 import http_status_pb2
from mesh.identity import apikeys
from mesh.identity.state import IdentityState
from mesh.runtime.context import API_KEY_HEADER, SCOPES_HEADER, TENANT_HEADER, USER_HEADER
from mesh.runtime.service import Runtime


def _header(name: str, value: str) -> base_pb2.HeaderValueOption:
    return base_pb2.HeaderValueOption(
        header=base_pb2.HeaderValue(key=name, value=value),
        append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD)


class ApiKeyAuthorizer(authz_grpc.AuthorizationServicer):
    """Envoy ext_authz for requests that carry `X-API-Key` (the gateway calls it only for those).
    It authenticates the key; the scope check itself stays in Envoy's RBAC rules, which read the
    scopes this returns as dynamic metadata."""

    def __init__(self, runtime: Runtime) -> None:
        self.db = runtime.database
        state: IdentityState = runtime.state
        self.operators = state.operators

    @staticmethod
    def _deny(message: str) -> authz.CheckResponse:
        return authz.CheckResponse(
            status=status_pb2.Status(code=code_pb2.UNAUTHENTICATED),
            denied_response=authz.DeniedHttpResponse(
                status=http_status_pb2.HttpStatus(code=http_status_pb2.Unauthorized),
                body=message))

    async def Check(self, request: authz.CheckRequest, context) -> authz.CheckResponse:
        key = request.attributes.request.http.headers.get("x-api-key", "")
        if not key.startswith(apikeys.API_KEY_PREFIX):
            return self._deny("invalid API key")
        row, creator = await self.db.read(lambda s: apikeys.find(s, key))
        scopes = apikeys.acting_scopes(row, creator, self.operators)
        if scopes is None:
            return self._deny("invalid, revoked or expired API key")
        metadata = struct_pb2.Struct()
        metadata.update({"scopes": scopes, "tenant_id": row.tenant_id})
        return authz.CheckResponse(
            status=status_pb2.Status(code=code_pb2.OK),
            dynamic_metadata=metadata,
            ok_response=authz.OkHttpResponse(headers=[
                _header(TENANT_HEADER, row.tenant_id),
                _header(USER_HEADER, row.created_by),
                _header(SCOPES_HEADER, " ".join(scopes)),
                _header(API_KEY_HEADER, row.id),
            ]))
