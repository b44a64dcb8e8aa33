"""The OpenAPI document and the Swagger UI that reads it (GET /docs), served as files so that a
strict Content-Security-Policy can forbid inline scripts."""

from __future__ import annotations

import asyncio
import mimetypes
from pathlib import Path

import swagger_ui_bundle
from google.api import httpbody_pb2

from mesh.runtime.errors import NotFound

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


def page() -> httpbody_pb2.HttpBody:
    return httpbody_pb2.HttpBody(content_type="text/html; charset=utf-8", data=_DOCS_PAGE.encode())


async def asset(path: str) -> httpbody_pb2.HttpBody:
    """A file of the Swagger UI bundle (or its init script); NOT_FOUND outside the bundle."""
    if path == "init.js":
        return httpbody_pb2.HttpBody(content_type="application/javascript",
                                     data=_DOCS_INIT.encode())
    found = (_SWAGGER_DIR / path).resolve()
    if _SWAGGER_DIR.resolve() not in found.parents or not found.is_file():
        raise NotFound(f"no docs asset {path!r}", details={"path": path})
    content_type = mimetypes.guess_type(found.name)[0] or "application/octet-stream"
    data = await asyncio.to_thread(found.read_bytes)
    return httpbody_pb2.HttpBody(content_type=content_type, data=data)
