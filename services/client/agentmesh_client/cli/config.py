"""Contexts, as kubectl and gh keep them: several meshes and accounts in one file
(`<user config dir>/agentmesh/config.json`, mode 0600; `AGENTMESH_CONFIG_DIR` moves it), one of
them current.

    {"current_context": "prod",
     "contexts": {"prod": {"url": ..., "email": ..., "access_token": ..., "refresh_token": ...},
                  "local": {"url": "http://127.0.0.1:8080", ...}}}

`--context NAME` (or `AGENTMESH_CONTEXT`) picks another for one command; `AGENTMESH_URL`,
`AGENTMESH_TOKEN` and `AGENTMESH_API_KEY` override the context's for scripts. A file written by
an older version (one session at the top level) reads as the context `default`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import typer

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_CONTEXT = "default"
# Set by the `--context` option of the command line (before any command runs).
selected: dict[str, str] = {"context": ""}


def config_path() -> Path:
    folder = os.environ.get("AGENTMESH_CONFIG_DIR") or typer.get_app_dir("agentmesh")
    return Path(folder) / "config.json"


def load() -> dict[str, Any]:
    try:
        data = json.loads(config_path().read_text())
    except (OSError, ValueError):
        data = {}
    if not isinstance(data, dict):
        data = {}
    if "contexts" not in data:  # the one-session file of older versions
        session = {k: v for k, v in data.items() if k in ("url", "email", "access_token",
                                                         "refresh_token", "api_key")}
        data = {"current_context": DEFAULT_CONTEXT,
                "contexts": {DEFAULT_CONTEXT: session} if session else {}}
    data.setdefault("current_context", "")
    return data


def save(data: dict[str, Any]) -> None:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
        json.dump(data, handle, indent=1)
    temporary.replace(path)


def current_name(data: dict[str, Any] | None = None) -> str:
    data = data if data is not None else load()
    return (selected["context"] or os.environ.get("AGENTMESH_CONTEXT")
            or data.get("current_context") or DEFAULT_CONTEXT)


def context(name: str = "") -> dict[str, Any]:
    """The settings of a context (the current one by default); {} when it does not exist."""
    data = load()
    return dict(data["contexts"].get(name or current_name(data), {}))


def update_context(name: str, values: dict[str, Any], replace: bool = False) -> None:
    data = load()
    previous = {} if replace else data["contexts"].get(name, {})
    data["contexts"][name] = {**previous, **values}
    if not data.get("current_context"):
        data["current_context"] = name
    save(data)
