"""SystemService: health of the whole platform, the OpenAPI document and Swagger UI."""

from __future__ import annotations

import asyncio
import mimetypes
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import grpc
import swagger_ui_bundle
from google.api import httpbody_pb2
from google.protobuf import timestamp_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agentmesh.system.v1 import system_pb2 as pb
from agentmesh.system.v1 import system_pb2_grpc as pb_grpc
from mesh import resources
from mesh.runtime.errors import NotFound, Unavailable
from mesh.runtime.service import Runtime, ServiceDefinition

_SWAGGER_DIR = Path(swagger_ui_bundle.swagger_ui_path)
_DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Agent Mesh API</title>
<link rel="stylesheet" href="/docs/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script src="/docs/swagger-ui-standalone-preset.js"></script>
<script src="/docs/init.js"></script>
</body></html>
"""
# Served as a file, not inline, so a strict Content-Security-Policy can forbid inline scripts.
_DOCS_INIT = """window.ui = SwaggerUIBundle({url: "/api/v1/openapi.json", dom_id: "#swagger-ui",
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset], layout: "StandaloneLayout"});
"""


def _version() -> str:
    try:
        return version("agentmesh")
    except PackageNotFoundError:
        return "dev"


class SystemService(pb_grpc.SystemServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.settings = runtime.settings
        self.peers = {name: runtime.peers.channel(name)
                      for name in runtime.peers.addresses if name != "system"}
        self.openapi = resources.openapi_document()

    async def _check(self, name: str, channel: grpc.aio.Channel) -> pb.ServiceHealth:
        started = time.perf_counter()
        try:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=2)
            ok = reply.status == health_pb2.HealthCheckResponse.SERVING
            message = "" if ok else health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        except grpc.aio.AioRpcError as exc:
            ok, message = False, exc.code().name
        return pb.ServiceHealth(name=name, status="healthy" if ok else "unhealthy",
                                message=message,
                                latency_ms=round((time.perf_counter() - started) * 1000, 2))

    async def _report(self) -> pb.HealthResponse:
        checks = await asyncio.gather(*(self._check(n, c) for n, c in sorted(self.peers.items())))
        system = pb.ServiceHealth(name="system", status="healthy")
        now = timestamp_pb2.Timestamp()
        now.GetCurrentTime()
        unhealthy = [c.name for c in checks if c.status != "healthy"]
        report = pb.HealthResponse(status="unhealthy" if unhealthy else "healthy",
                                   service="agentmesh", version=_version(), timestamp=now,
                                   services=[system, *checks])
        if unhealthy:
            raise Unavailable(f"not ready: {', '.join(unhealthy)}", reason="NOT_READY",
                              details={"status": "unhealthy", "unhealthy": ",".join(unhealthy)})
        return report

    async def CheckHealth(self, request, context) -> pb.HealthResponse:
        """For probes and anonymous callers: the status only, never the list of services
        (that is GetHealth, behind system:read)."""
        report = await self._report_or_unavailable()
        return pb.HealthResponse(status=report.status, timestamp=report.timestamp)

    async def _report_or_unavailable(self) -> pb.HealthResponse:
        try:
            return await self._report()
        except Unavailable as exc:
            raise Unavailable("not ready", reason="NOT_READY",
                              details={"status": "unhealthy"}) from exc

    async def GetHealth(self, request, context) -> pb.HealthResponse:
        return await self._report()

    async def GetOpenApiDocument(self, request, context) -> httpbody_pb2.HttpBody:
        return httpbody_pb2.HttpBody(content_type="application/json", data=self.openapi)

    async def GetDocsPage(self, request, context) -> httpbody_pb2.HttpBody:
        return httpbody_pb2.HttpBody(content_type="text/html; charset=utf-8",
                                     data=_DOCS_PAGE.encode())

    async def GetDocsAsset(self, request, context) -> httpbody_pb2.HttpBody:
        if request.path == "init.js":
            return httpbody_pb2.HttpBody(content_type="application/javascript",
                                         data=_DOCS_INIT.encode())
        asset = (_SWAGGER_DIR / request.path).resolve()
        if _SWAGGER_DIR.resolve() not in asset.parents or not asset.is_file():
            raise NotFound(f"no docs asset {request.path!r}", details={"path": request.path})
        content_type = mimetypes.guess_type(asset.name)[0] or "application/octet-stream"
        data = await asyncio.to_thread(asset.read_bytes)
        return httpbody_pb2.HttpBody(content_type=content_type, data=data)


DEFINITION = ServiceDefinition("system", servicers=[SystemService])
