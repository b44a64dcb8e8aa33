"""The live service: WebSockets that relay the events of executions and agent calls
(docs/live-events.md).

One process serves two listeners: gRPC (`LiveService`, mesh/live/api/live.py: CreateTicket for
browsers, the internal PublishEvent) and the WebSocket listener (mesh/live/hub.py) on
`AGENTMESH_LIVE_WS_PORT`, which the gateway routes `/ws/...` to after authenticating the
upgrade. Events come from the bus of `mesh.runtime.events` (NATS JetStream, or this process's
memory when no NATS is configured).

Per socket (mesh/live/stream.py): the first message is the current state (read from the owning
service as the caller, which also proves the tenant may see it), then every event in order,
each `{type, seq, payload}`. A client that reconnects with `?after=<seq>` gets the events it
missed, as long as the bus still keeps them (ten minutes on NATS); otherwise it gets the current
state again (`"resumed": false`). `{"type": "ping"}` is answered `{"type": "pong"}`. Every
socket has a bounded queue; a client that does not read fast enough is closed with code 4008
and may resume with its last seq.
"""

from __future__ import annotations

from mesh.live.api.live import LiveService
from mesh.live.state import LiveState
from mesh.runtime.service import ServiceDefinition

DEFINITION = ServiceDefinition("live", servicers=[LiveService], state=LiveState)
