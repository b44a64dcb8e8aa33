"""What the live service keeps: its WebSocket hub (listener, bus, tickets, open sockets),
listening from before the service reports SERVING until after it drains."""

from __future__ import annotations

from mesh.live.hub import Hub
from mesh.runtime import events
from mesh.runtime.service import Runtime


class LiveState:
    def __init__(self, runtime: Runtime) -> None:
        self.settings = runtime.settings
        self.hub = Hub(runtime)

    async def start(self) -> None:
        if not self.settings.nats_url:
            events.local_bus()  # this process keeps the events; its other services hand them over
        await self.hub.start()

    async def close(self) -> None:
        await self.hub.stop()
