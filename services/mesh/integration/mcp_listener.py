"""The MCP listener of the integration service: the official SDK's Streamable HTTP transport
(an ASGI app, served by uvicorn inside the service's event loop) on `AGENTMESH_MCP_PORT`, which
the gateway routes `/api/v1/mcp` to after authenticating the request (docs/mcp.md). The
handlers are mesh/integration/mcp_server.py's."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import uvicorn
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.routing import Route

from mesh.integration.mcp_server import MeshMCP
from mesh.runtime.peers import Peers
from mesh.runtime.settings import Settings

log = logging.getLogger("mesh.integration.mcp")
PATH = "/api/v1/mcp"
# A session nobody used for this long is closed (the client initializes again).
SESSION_IDLE_SECONDS = 30 * 60


class _Server(uvicorn.Server):
    """uvicorn inside a process that owns its signals: the gRPC server's graceful SIGTERM
    (mesh.runtime.server) stops this listener through `MCPListener.stop`."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield


class MCPListener:
    def __init__(self, settings: Settings, peers: Peers) -> None:
        self.settings = settings
        self.mcp = MeshMCP(peers)
        # Only the gateway reaches this port, and every request is authenticated there (no
        # cookies: a rebinding page has no credential to send), so Host and Origin are not
        # checked here; the gateway's CORS policy applies.
        self.sessions = StreamableHTTPSessionManager(
            app=self.mcp.server, session_idle_timeout=SESSION_IDLE_SECONDS,
            security_settings=TransportSecuritySettings(enable_dns_rebinding_protection=False))
        app = Starlette(routes=[Route(PATH, endpoint=StreamableHTTPASGIApp(self.sessions))],
                        lifespan=lambda _: self.sessions.run())
        self.server = _Server(uvicorn.Config(
            app, host=settings.host, port=settings.mcp_port, log_level="warning",
            lifespan="on", access_log=False, timeout_graceful_shutdown=5))
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.ensure_future(self.server.serve())
        for _ in range(200):
            if self.server.started or self._task.done():
                break
            await asyncio.sleep(0.05)
        if self._task.done():
            self._task.result()  # raises why it could not listen
        log.info("integration: MCP listener on %s:%s%s", self.settings.host,
                 self.settings.mcp_port, PATH)

    async def stop(self) -> None:
        if self._task is None:
            return
        self.server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._task, 10)
