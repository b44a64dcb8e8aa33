"""The OpenAPI document and the Swagger UI that reads it (GET /docs), served as files so that a
strict Content-Security-Policy can forbid inline scripts.

The Swagger UI is the official `swagger-ui-dist` distribution, vendored into `swagger_ui/` beside
this module by `.ci/vendor-swagger-ui` at the version `.ci/tools/swagger-ui/package-lock.json`
pins (its MANIFEST names the version and each file's SHA-256): the page needs no network.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from google.api import httpbody_pb2

from mesh.runtime.errors import NotFound

_SWAGGER_DIR = Path(__file__).with_name("swagger_ui")
# The assets served, and their media types (the document's GetDocsAsset lists the same three).
_ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui-standalone-preset.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-16x16.png": "image/png",
    "favicon-32x32.png": "image/png",
}
_DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Agent Mesh API</title>
<link rel="stylesheet" href="/docs/swagger-ui.css">
<link rel="icon" type="image/png" href="/docs/favicon-32x32.png" sizes="32x32"></head>
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
    """A file of the Swagger UI (or its init script); NOT_FOUND for any other path."""
    if path == "init.js":
        return httpbody_pb2.HttpBody(content_type="text/javascript", data=_DOCS_INIT.encode())
    content_type = _ASSETS.get(path)
    if content_type is None:
        raise NotFound(f"no docs asset {path!r}", details={"path": path})
    data = await asyncio.to_thread((_SWAGGER_DIR / path).read_bytes)
    return httpbody_pb2.HttpBody(content_type=content_type, data=data)
