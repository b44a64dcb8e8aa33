"""LiveService: tickets for browsers' WebSockets, and the internal PublishEvent through which
other processes hand their events to this one's bus."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from google.protobuf import timestamp_pb2

from agentmesh.live.v1 import live_pb2, live_pb2_grpc
from mesh.live.state import LiveState
from mesh.live.tickets import TICKET_SECONDS
from mesh.runtime import events
from mesh.runtime.context import (SESSION_HEADER, TOKEN_IAT_HEADER, metadata_value,
                                  require_caller)
from mesh.runtime.errors import InvalidArgument
from mesh.runtime.service import Runtime


class LiveService(live_pb2_grpc.LiveServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        state: LiveState = runtime.state
        self.hub = state.hub

    async def CreateTicket(self, request, context) -> live_pb2.Ticket:
        caller = require_caller(context)
        ticket, expires = await self.hub.tickets.issue({
            "tenant_id": caller.tenant_id, "user_id": caller.user_id,
            "scopes": sorted(caller.scopes),
            "session_id": metadata_value(context, SESSION_HEADER),
            "token_iat": metadata_value(context, TOKEN_IAT_HEADER)})
        at = timestamp_pb2.Timestamp()
        at.FromDatetime(datetime.fromtimestamp(expires, UTC))
        return live_pb2.Ticket(ticket=ticket, expires_at=at, expires_in=TICKET_SECONDS)

    async def PublishEvent(self, request, context) -> live_pb2.PublishEventResponse:
        if not (events.valid_token(request.tenant_id) and events.valid_token(request.key)
                and request.kind in ("execution", "call") and request.type):
            raise InvalidArgument("tenant_id, kind, key and type are required")
        try:
            payload = json.loads(request.payload_json or "{}")
        except ValueError:
            raise InvalidArgument("payload_json is not JSON") from None
        await self.hub.bus.publish(request.tenant_id, request.kind, request.key, request.type,
                                   payload if isinstance(payload, dict) else {"value": payload})
        return live_pb2.PublishEventResponse()
