"""gen/ is in step with protos/, the contract passes buf's lint and breaking checks, and the
documented `agentmesh gen --check` says so. These run the tools (protoc, buf, git, the CLI):
the service layer, beside the pure checks of tests/test_contract.py."""

from __future__ import annotations

import subprocess
import sys

from mesh.build import protos
from mesh.build.repo import REPO_ROOT


def test_gen_is_up_to_date_with_protos():
    assert protos.stale_files() == [], "run `agentmesh gen`"


def test_the_client_packages_generated_modules_are_up_to_date():
    """services/client/agentmesh_client/_generated (models, routes, services) is written from
    the same contract by `agentmesh gen`; `gen --check` reports it when stale."""
    from mesh.build import client

    assert client.stale_files() == [], "run `agentmesh gen`"


def test_buf_lint_passes():
    assert protos.buf_lint() == 0


def test_no_breaking_change_against_the_released_contract():
    """protos/BASELINE names the commit of the last released contract; a field removed,
    renamed or renumbered since then fails here (buf's FILE rules)."""
    assert protos.buf_breaking() == 0


def test_documented_gen_check_command_works():
    reply = subprocess.run([sys.executable, "-m", "mesh.cli", "gen", "--check"],
                           capture_output=True, text=True, cwd=REPO_ROOT)
    assert reply.returncode == 0, reply.stderr
    assert "up to date" in reply.stdout
