"""What the integration service keeps for its life: the egress guard its outbound requests go
through, the outbox sender of the tenant's platform events (mesh.integration.events), and the
masterdata adapter that reads secrets when a connection is used."""

from __future__ import annotations

from mesh.integration.events import Events
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

    async def start(self) -> None:
        # Deliveries queued before a restart (or by a replica that died) go out from here on.
        self.events.start()

    async def close(self) -> None:
        await self.events.close()
