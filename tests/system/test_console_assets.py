"""The web console's build (services/mesh/system/console/, made by .ci/build-console from
console/) is committed with the package: each file matches its MANIFEST line, the MANIFEST names
the console's lock as it is now (a change to console/package-lock.json without a rebuild fails
here), the page loads only its own files, and nothing but the MANIFEST's files is served."""

from __future__ import annotations

import asyncio
import hashlib
import re
from pathlib import Path

import pytest

from mesh.runtime.errors import NotFound
from mesh.system import console

ROOT = Path(__file__).resolve().parents[2]


def _manifest() -> tuple[str, dict[str, str]]:
    head, *lines = (console.CONSOLE_DIR / "MANIFEST").read_text().splitlines()
    return head, {name: digest for digest, name in (line.split("  ", 1) for line in lines)}


def test_the_built_console_is_the_one_its_manifest_and_lock_name():
    head, listed = _manifest()
    lock = hashlib.sha256((ROOT / "console/package-lock.json").read_bytes()).hexdigest()
    assert head == f"agentmesh-console package-lock.json {lock}", "run .ci/build-console"
    on_disk = {p.relative_to(console.CONSOLE_DIR).as_posix()
               for p in console.CONSOLE_DIR.rglob("*") if p.is_file() and p.name != "MANIFEST"}
    assert set(listed) == on_disk
    for name, digest in listed.items():
        data = (console.CONSOLE_DIR / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest, f"{name} changed: run .ci/build-console"
    assert "index.html" in listed and any(n.endswith(".js") for n in listed)


def test_the_page_loads_only_its_own_files_below_console():
    html = (console.CONSOLE_DIR / "index.html").read_text()
    _, listed = _manifest()
    refs = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert refs, html
    for ref in refs:
        assert ref.startswith("/console/") and ref.removeprefix("/console/") in listed, ref
    assert "<script>" not in html  # no inline script: a strict CSP can forbid them


def test_assets_are_served_with_their_media_type_and_nothing_else():
    page = asyncio.run(console.page())
    assert page.content_type.startswith("text/html") and b'id="root"' in page.data
    _, listed = _manifest()
    script = next(n for n in listed if n.endswith(".js"))
    assert asyncio.run(console.asset(script)).content_type == "text/javascript"
    style = next(n for n in listed if n.endswith(".css"))
    assert asyncio.run(console.asset(style)).content_type == "text/css"
    for path in ("MANIFEST", "../console.py", "../../runtime/settings.py", "assets",
                 "assets/../index.html", "/etc/passwd", "nope.js"):
        with pytest.raises(NotFound):
            asyncio.run(console.asset(path))


def _segments_match(used: list[str], route: list[str]) -> bool:
    return len(used) == len(route) and all(
        u == "*" or r.startswith("{") or u == r for u, r in zip(used, route))


def test_the_console_uses_only_public_routes_of_the_contract():
    """Every REST path the console's source names is a route of the published OpenAPI document
    (`${...}` stands for any one segment): it has no API of its own."""
    import json

    document = json.loads((ROOT / "gen/agentmesh/openapi.json").read_text())
    routes = [p.strip("/").split("/") for p in document["paths"]]
    used = set()
    for source in (ROOT / "console/src").rglob("*.ts*"):
        for literal in re.findall(r'[`"](/api/v1/[^`"]*)[`"]', source.read_text()):
            path = re.sub(r"\$\{[^}]*\}", "*", literal.split("?")[0])
            used.add(path)
    assert len(used) > 20
    unknown = [p for p in sorted(used) if not any(_segments_match(p.strip("/").split("/"), r)
                                                  for r in routes)]
    assert not unknown, unknown
