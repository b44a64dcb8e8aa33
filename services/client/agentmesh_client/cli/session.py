"""The client of a command: the URL and credentials of the selected context (or of
`AGENTMESH_URL`, `AGENTMESH_TOKEN`, `AGENTMESH_API_KEY`); a refreshed token is written back to
its context at once."""

from __future__ import annotations

import os

from agentmesh_client.cli import config
from agentmesh_client.client import Client, Tokens


def client() -> Client:
    name = config.current_name()
    settings = config.context(name)
    url = os.environ.get("AGENTMESH_URL") or settings.get("url") or config.DEFAULT_URL
    token = os.environ.get("AGENTMESH_TOKEN", "")

    def store(tokens: Tokens) -> None:  # a refreshed pair replaces the spent one at once
        if not token:
            config.update_context(name, {"access_token": tokens.access_token,
                                         "refresh_token": tokens.refresh_token})
    return Client(url, token=token or settings.get("access_token", ""),
                  refresh_token="" if token else settings.get("refresh_token", ""),
                  api_key=os.environ.get("AGENTMESH_API_KEY") or settings.get("api_key", ""),
                  on_tokens=store)
