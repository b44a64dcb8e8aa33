"""What the integration service keeps for its life: the egress guard its outbound requests go
through, the outbox sender of the tenant's platform events (mesh.integration.events), and the
masterdata adapter that reads secrets when a connection is used; and the MCP listener
(mesh/integration/mcp_listener.py, docs/mcp.md) when `AGENTMESH_MCP_PORT` is set."""

from __future__ import annotations

from mesh.integration.events import Events
from mesh.integration.mcp_listener import MCPListener
from mesh.runtime.egress import EgressPolicy
from mesh.runtime.masterdata_client import MasterData
from mesh.runtime.service import Runtime


class IntegrationState:
    def __init__(self, runtime: Runtime) -> None:
        self.db = runtime.database
        self.peers = runtime.peers
        self.egress = EgressPolicy.from_settings(runtime.settings)
        self.events = Events(self.db, self.egress)
        self.masterdata = MasterData(self.peers)
        self.mcp = (MCPListener(runtime.settings, self.peers) if runtime.settings.mcp_port
                    else None)

    async def start(self) -> None:
        # Deliveries queued before a restart (or by a replica that died) go out from here on.
        self.events.start()
        if self.mcp is not None:
            await self.mcp.start()

    async def close(self) -> None:
        if self.mcp is not None:
            await self.mcp.stop()
        await self.events.close()
