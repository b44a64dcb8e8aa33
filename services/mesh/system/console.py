"""The web console (GET /console): a single-page app built with Vite, React and TypeScript from
`console/` at the top of the repository, which talks to the mesh only through the public REST API
and the live WebSockets (docs/console.md).

The build output is committed into `console/` beside this module by `.ci/build-console` (a pip
user has no Node), with a MANIFEST of each file's SHA-256 that a unit test checks. Only the files
the MANIFEST names are served; a name is looked up, never joined onto a path the caller wrote.
"""

from __future__ import annotations

import asyncio
from functools import lru_cache
from pathlib import Path

from google.api import httpbody_pb2

from mesh.runtime.errors import NotFound

CONSOLE_DIR = Path(__file__).with_name("console")
_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml",
          ".html": "text/html; charset=utf-8"}


def files() -> dict[str, str]:
    """The served files (path below `/console/` -> content type), from the MANIFEST (read again
    only when it changes: a rebuild while the mesh runs is served at once)."""
    manifest = CONSOLE_DIR / "MANIFEST"
    try:
        stamp = manifest.stat().st_mtime_ns
    except FileNotFoundError:
        return {}
    return _read_manifest(stamp)


@lru_cache(maxsize=1)
def _read_manifest(stamp: int) -> dict[str, str]:
    found = {}
    for line in (CONSOLE_DIR / "MANIFEST").read_text().splitlines()[1:]:
        _, _, name = line.partition("  ")
        suffix = Path(name).suffix
        if name and suffix in _TYPES:
            found[name] = _TYPES[suffix]
    return found


async def _read(path: str) -> bytes:
    return await asyncio.to_thread((CONSOLE_DIR / path).read_bytes)


async def page() -> httpbody_pb2.HttpBody:
    if "index.html" not in files():
        raise NotFound("the console is not built (.ci/build-console)", details={"path": ""})
    return httpbody_pb2.HttpBody(content_type=_TYPES[".html"], data=await _read("index.html"))


async def asset(path: str) -> httpbody_pb2.HttpBody:
    """A built file of the console; NOT_FOUND for any path the MANIFEST does not name."""
    content_type = files().get(path)
    if content_type is None:
        raise NotFound(f"no console asset {path!r}", details={"path": path})
    return httpbody_pb2.HttpBody(content_type=content_type, data=await _read(path))
