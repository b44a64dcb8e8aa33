"""The /docs page's Swagger UI is the official swagger-ui-dist, vendored (.ci/vendor-swagger-ui)
at the version the npm lock pins, unchanged since: each file matches its MANIFEST line."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import pytest

from mesh.runtime.errors import NotFound
from mesh.system import docs

ROOT = Path(__file__).resolve().parents[2]


def test_the_vendored_swagger_ui_is_the_locked_swagger_ui_dist():
    lock = json.loads((ROOT / ".ci/tools/swagger-ui/package-lock.json").read_text())
    locked = lock["packages"]["node_modules/swagger-ui-dist"]["version"]
    head, *lines = (docs._SWAGGER_DIR / "MANIFEST").read_text().splitlines()
    assert head == f"swagger-ui-dist {locked}"
    listed = {name: digest for digest, name in (line.split("  ", 1) for line in lines)}
    on_disk = {p.name for p in docs._SWAGGER_DIR.iterdir() if p.name != "MANIFEST"}
    assert set(listed) == on_disk and set(docs._ASSETS) <= on_disk
    for name, digest in listed.items():
        assert hashlib.sha256((docs._SWAGGER_DIR / name).read_bytes()).hexdigest() == digest, name


def test_assets_are_served_with_their_media_type_and_nothing_else():
    bundle = asyncio.run(docs.asset("swagger-ui-bundle.js"))
    assert bundle.content_type == "text/javascript" and len(bundle.data) > 1_000_000
    assert asyncio.run(docs.asset("swagger-ui.css")).content_type == "text/css"
    assert asyncio.run(docs.asset("init.js")).data.startswith(b"window.ui = SwaggerUIBundle(")
    for path in ("index.html", "MANIFEST", "../docs.py", "swagger-ui.js.map"):
        with pytest.raises(NotFound):
            asyncio.run(docs.asset(path))
    assert b"/docs/swagger-ui-bundle.js" in docs.page().data
