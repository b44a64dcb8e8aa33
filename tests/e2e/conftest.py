"""Fixtures of the end-to-end tests that need outbound traffic to local servers (the servers
themselves, `web`, `mcp_server` and `model_server`, are tests/conftest.py's)."""

from __future__ import annotations

import pytest

from tests.conftest import start_mesh, stop_mesh


@pytest.fixture(scope="session")
def egress_mesh(tmp_path_factory):
    """A mesh whose egress allow-list names 127.0.0.1 (only), so tools, MCP servers, models and
    alert webhooks may be served by local test servers. The shared `mesh` keeps the default,
    empty list."""
    running = start_mesh(tmp_path_factory.mktemp("egress-mesh"),
                         extra_env={"AGENTMESH_EGRESS_ALLOW": "127.0.0.1",
                                    # alert rules evaluated every second (default 30)
                                    "AGENTMESH_ALERT_EVALUATION_SECONDS": "1"})
    yield running
    stop_mesh(running)
