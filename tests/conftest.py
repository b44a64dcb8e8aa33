"""Shared fixtures. The mesh fixture starts the product the way a user does: `agentmesh up` as a
process, real Envoy, real services, a fresh data directory; tests talk to it over HTTP. `me`
is a caller of the in-process service tests (tests/harness.py); `web`, `mcp_server` and
`model_server` are local servers for tools, MCP and models (tests/fakes/), one per session.

Every test gets its layer's marker here (unit, service, e2e: tests/support/layers.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest

from tests.support import layers

# Tests' meshes run with this operator tenant; only its admins hold system:write.
OPERATOR_TENANT = "operators"
# The server tests use; each test session works in a database of its own on it, made at the
# start and dropped at the end, so two sessions on one machine (two checkouts, a CI run beside a
# developer's) never drop or migrate each other's schemas.
SERVER_URL = os.environ.get("AGENTMESH_TEST_POSTGRES_URL",
                            "postgresql+psycopg://postgres@127.0.0.1:5432/test")
SESSION_DATABASE = f"agentmesh_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
POSTGRES_URL = SERVER_URL.rsplit("/", 1)[0] + "/" + SESSION_DATABASE


def _admin(statement: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(SERVER_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql(statement)
    finally:
        engine.dispose()


def pytest_configure(config) -> None:
    try:
        _admin(f'CREATE DATABASE "{SESSION_DATABASE}"')
    except Exception:  # noqa: BLE001 - no server: the tests that need one fail, saying so
        pass


def pytest_collection_modifyitems(config, items) -> None:
    """Every test gets its layer's marker (tests/support/layers.py): `-m unit`, `-m service`,
    `-m e2e`, `-m "not e2e"`."""
    for item in items:
        item.add_marker(layers.layer_of(item))


@pytest.fixture(autouse=True)
def _unit_tests_do_no_io(request):
    """A unit test that opens a socket, starts a process or a database fails."""
    if request.node.get_closest_marker("unit") is None:
        yield
        return
    with pytest.MonkeyPatch.context() as patch:
        layers.refuse_io(patch)
        yield


def pytest_unconfigure(config) -> None:
    try:
        _admin(f'DROP DATABASE IF EXISTS "{SESSION_DATABASE}" WITH (FORCE)')
    except Exception:  # noqa: BLE001
        pass


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The real PostgreSQL this machine kind runs; a test that needs it fails without it."""
    import sqlalchemy as sa

    try:
        with sa.create_engine(POSTGRES_URL).connect():
            return POSTGRES_URL
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_URL}: {exc}")


def _free_port() -> int:
    """Below the ephemeral range (mesh.supervisor.stable_port): a port picked there can be taken
    by another process's outgoing connection before the gateway binds it."""
    from mesh.supervisor import stable_port

    return stable_port()


@dataclass
class RunningMesh:
    url: str
    data_dir: Path
    process: subprocess.Popen

    def client(self, token: str | None = None, api_key: str | None = None) -> httpx2.Client:
        headers = {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if api_key:
            headers["X-API-Key"] = api_key
        return httpx2.Client(base_url=self.url, headers=headers, timeout=30)


def start_mesh(data_dir: Path, extra_env: dict[str, str] | None = None,
               rate_limit: int = 100000, isolation: str = "shared") -> RunningMesh:
    port = _free_port()
    # Every request traced, so a test can follow any call's trace. Many tests sign in from
    # 127.0.0.1: the per-IP auth limit and login throttle are tested on their own
    # (tests/e2e/test_security.py), not by accident here.
    env = {**os.environ, "AGENTMESH_TRACE_SAMPLE_PERCENT": "100",
           "AGENTMESH_GATEWAY_AUTH_RATE_LIMIT": str(rate_limit),
           "AGENTMESH_LOGIN_FREE_FAILURES_PER_IP": "100000",
           "AGENTMESH_OPERATOR_TENANTS": OPERATOR_TENANT, **(extra_env or {})}
    process = subprocess.Popen(
        [sys.executable, "-m", "mesh.cli", "up", "--port", str(port), "--data-dir", str(data_dir),
         "--rate-limit", str(rate_limit), "--isolation", isolation],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    up, output = read_until_up(process, timeout=120)
    if up:
        return RunningMesh(f"http://127.0.0.1:{port}", data_dir, process)
    process.kill()
    raise RuntimeError("agentmesh up did not start:\n" + output)


def read_until_up(process: subprocess.Popen, timeout: float) -> tuple[bool, str]:
    """Reads what `agentmesh up` prints until it says it is up (True), ends, or `timeout`
    passes (False); with what it printed so far."""
    output = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        output.append(line)
        if "is up at" in line:
            return True, "".join(output)
    return False, "".join(output)


def stop_mesh(mesh: RunningMesh) -> None:
    mesh.process.send_signal(signal.SIGTERM)
    try:
        mesh.process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        mesh.process.kill()
        raise


@pytest.fixture(scope="session")
def mesh(tmp_path_factory) -> RunningMesh:
    running = start_mesh(tmp_path_factory.mktemp("mesh"))
    yield running
    stop_mesh(running)


@dataclass
class Tenant:
    token: str
    refresh_token: str
    tenant_id: str
    user_id: str
    email: str
    password: str


def _register(mesh: RunningMesh, tenant_name: str, email: str) -> Tenant:
    with mesh.client() as client:
        reply = client.post("/api/v1/auth/register", json={
            "tenant_name": tenant_name, "email": email, "password": "correct-horse-1"})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    return Tenant(body["access_token"], body["refresh_token"], body["tenant"]["id"],
                  body["user"]["id"], email, "correct-horse-1")


def register(mesh: RunningMesh, name: str = "acme") -> Tenant:
    suffix = uuid.uuid4().hex[:8]  # tenant names are unique: one per test
    return _register(mesh, f"{name}-{suffix}", f"{name}-{suffix}@example.com")


@pytest.fixture
def tenant(mesh) -> Tenant:
    return register(mesh)


@pytest.fixture(scope="session")
def _operator_account(mesh) -> dict:
    return {"tenant": register_operator(mesh), "since": time.monotonic()}


@pytest.fixture
def operator(mesh, _operator_account) -> Tenant:
    """The admin of the tenant that operates the platform (AGENTMESH_OPERATOR_TENANTS),
    registered once per session and logged in again when its access token is more than ten
    minutes old (they last fifteen; a slow e2e run outlasts one)."""
    account = _operator_account
    if time.monotonic() - account["since"] > 600:
        tenant = account["tenant"]
        with mesh.client() as client:
            reply = client.post("/api/v1/auth/login", json={"email": tenant.email,
                                                            "password": tenant.password})
        assert reply.status_code == 200, reply.text
        tenant.token, tenant.refresh_token = (reply.json()["access_token"],
                                              reply.json()["refresh_token"])
        account["since"] = time.monotonic()
    return account["tenant"]


def register_operator(mesh: RunningMesh) -> Tenant:
    return _register(mesh, OPERATOR_TENANT, f"ops-{uuid.uuid4().hex[:8]}@example.com")


USER_PASSWORD = "user-pass-123"


def new_user(mesh: RunningMesh, tenant: Tenant, role: str = "ROLE_DEVELOPER"
             ) -> tuple[str, str, str]:
    """A new user of the tenant with this role, logged in (password USER_PASSWORD):
    (user id, email, access token)."""
    email = f"{role.lower()}-{uuid.uuid4().hex[:6]}@example.com"
    with mesh.client(tenant.token) as client:
        created = client.post("/api/v1/auth/users", json={
            "email": email, "password": USER_PASSWORD, "role": role})
        assert created.status_code == 200, created.text
        login = client.post("/api/v1/auth/login", json={"email": email, "password": USER_PASSWORD})
        assert login.status_code == 200, login.text
    return created.json()["id"], email, login.json()["access_token"]


@pytest.fixture
def other_tenant(mesh) -> Tenant:
    return register(mesh, "globex")


def assert_envelope(reply: httpx2.Response, status: int, error: str) -> dict:
    """Every non-2xx answer: the one envelope, the status, the correlation id echoed."""
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"].startswith("application/json")
    body = reply.json()
    assert set(body) >= {"error", "message", "details", "correlation_id", "request_id",
                         "timestamp"}, body
    assert body["error"] == error, body
    assert body["correlation_id"] == reply.headers["x-correlation-id"]
    assert body["correlation_id"]
    # Seed 000's name for the same id, in the body and (seed 002) as a header.
    assert body["request_id"] == body["correlation_id"] == reply.headers["x-request-id"]
    return body


# ---- in-process service tests -------------------------------------------------------------
@pytest.fixture
def me():
    """A caller of its own (a fresh tenant and user, every scope) for each test."""
    from tests.harness import Identity

    return Identity()


# ---- local servers, one per session --------------------------------------------------------
@pytest.fixture(scope="session")
def web():
    from tests.fakes.http_server import LocalHTTPServer

    with closing(LocalHTTPServer()) as server:
        yield server


@pytest.fixture(scope="session")
def mcp_server():
    from tests.fakes.mcp_server import LocalMCPServer

    with closing(LocalMCPServer()) as server:
        yield server


@pytest.fixture(scope="session")
def model_server():
    from tests.fakes.openai_server import ScriptedModelServer

    with closing(ScriptedModelServer()) as server:
        yield server
