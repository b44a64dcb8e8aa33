"""The product as a user installs it: the wheels (the server's and the client package's it
requires), in a clean virtual environment (not editable, no extras), then `agentmesh up` from there, one round trip through the gateway, and a clean stop.

This is what catches a runtime import that only the dev extra provides, or a data file that the
wheel lacks or that the code looks for in the checkout.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx2

from tests.conftest import _free_port, read_until_up

REPO = Path(__file__).resolve().parents[2]
_NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", ".build", ".agentmesh", "__pycache__",
                                      "*.egg-info", "build", "dist", ".pytest_cache", "tests")


def _run(argv: list, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in argv], capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{argv} failed:\n{result.stdout}\n{result.stderr}"
    return result


def _build_wheels(tmp_path: Path) -> list[Path]:
    """The server's wheel and the client package's (services/client), which it requires."""
    # From a copy, so that the build leaves nothing in the checkout.
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=_NOT_SOURCES)
    out = tmp_path / "wheels"
    for project in (source, source / "services" / "client"):
        _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
              "--quiet", "-w", out, project])
    (server,) = out.glob("agentmesh-*.whl")
    (client,) = out.glob("agentmesh_client-*.whl")
    return [client, server]


def _clean_env(venv: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME") and not k.startswith("AGENTMESH_")}
    env["PATH"] = f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin"
    return env


def test_wheel_in_a_clean_venv_runs_agentmesh_up(tmp_path):
    started = time.monotonic()
    wheels = _build_wheels(tmp_path)
    venv = tmp_path / "venv"
    base_python = getattr(sys, "_base_executable", None) or shutil.which("python3")
    _run([base_python, "-m", "venv", venv])
    python = venv / "bin" / "python"
    env = _clean_env(venv)
    # Dependencies come from the package index pip is configured with (or its cache), at the
    # versions of the lock, as the README's set-up and the image install them.
    _run([python, "-m", "pip", "install", "--quiet", "-c", REPO / ".ci" / "constraints.txt",
          *wheels], env=env, cwd=tmp_path)
    assert _run([python, "-m", "pip", "check"], env=env).returncode == 0

    # The installed package is what runs, not the checkout; dev-only modules are absent.
    probe = _run([python, "-c", "import mesh, agentmesh, importlib.util; "
                                "print(mesh.__file__); print(agentmesh.__file__); "
                                "print(importlib.util.find_spec('pytest') is None); "
                                "print(importlib.util.find_spec('httpx') is None)"],
                 env=env, cwd=tmp_path).stdout.split()
    assert all(str(venv) in line for line in probe[:2]), probe
    assert probe[2] == "True", "pytest is a dev tool; the clean venv must not have it"
    assert probe[3] == "True", "one HTTP stack (httpx2): httpx is not installed"
    assert (venv / "bin" / "envoy").exists()

    port = _free_port()
    data_dir = tmp_path / "data"
    process = subprocess.Popen(
        [venv / "bin" / "agentmesh", "up", "--port", str(port), "--data-dir", data_dir],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path)
    try:
        url = f"http://127.0.0.1:{port}"
        up, output = read_until_up(process, timeout=90)
        assert up, output + _logs(data_dir)
        with httpx2.Client(base_url=url, timeout=30) as client:
            health = client.get("/health")
            assert health.status_code == 200, health.text
            assert health.json()["status"] == "healthy"
            assert client.get("/api/v1/openapi.json").json()["openapi"] == "3.1.0"
            assert client.get("/docs/swagger-ui.css").status_code == 200
            # The web console's build ships as package data too (no Node needed).
            console = client.get("/console")
            assert console.status_code == 200 and 'id="root"' in console.text
            registered = client.post("/api/v1/auth/register", json={
                "tenant_name": "installed", "email": f"u-{uuid.uuid4().hex[:8]}@example.com",
                "password": "correct-horse-1"})
            assert registered.status_code == 200, registered.text
            token = registered.json()["access_token"]
            created = client.post("/api/v1/agents", json={"name": "triage", "model": "gpt-4o"},
                                  headers={"Authorization": f"Bearer {token}"})
            assert created.status_code == 200, created.text
            fetched = client.get("/api/v1/agents/triage",
                                 headers={"Authorization": f"Bearer {token}"})
            assert fetched.json()["id"] == created.json()["id"]
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert process.returncode == 0, process.stdout.read()
    assert time.monotonic() - started < 180


def _logs(data_dir: Path) -> str:
    logs = data_dir / "logs"
    if not logs.is_dir():
        return ""
    return "".join(f"\n--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(logs.glob("*.log")))
