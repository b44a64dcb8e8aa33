"""The `agentmesh` client commands run as a user runs them (a subprocess with its own config
dir) against the real mesh: login, create from a file, list as JSON, run a workflow with
--watch, errors with the correlation id, agents chat and calls tail; and the README's Python
client example."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import yaml

from tests.conftest import register

USAGE_ERRORS = [
    [],  # no command: the help
    ["--nope"],
    ["nosuchcmd"],
    ["agents"],
    ["agents", "create"],  # without -f
    ["agents", "list", "--output", "bogus"],
    ["workflows", "run"],  # without a name
    ["up", "--port", "abc"],
]


def _cli(mesh, home: Path, *args: str, input_text: str | None = None,
         timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "AGENTMESH_CONFIG_DIR": str(home), "AGENTMESH_URL": mesh.url,
           "COLUMNS": "160", "NO_COLOR": "1"}
    env.pop("AGENTMESH_TOKEN", None)
    return subprocess.run([sys.executable, "-m", "mesh.cli", *args], env=env, text=True,
                          capture_output=True, input=input_text, timeout=timeout)


def _context(home: Path, name: str = "") -> dict:
    data = json.loads((home / "config.json").read_text())
    return data["contexts"][name or data["current_context"]]


def _login(mesh, tmp_path):
    tenant = register(mesh)
    home = tmp_path / "config"
    result = _cli(mesh, home, "login", "--email", tenant.email, "--password", tenant.password)
    assert result.returncode == 0, result.stderr
    assert tenant.email in result.stdout and "(admin)" in result.stdout
    assert tenant.tenant_id not in result.stdout
    stored = _context(home)
    assert stored["access_token"] and stored["refresh_token"] and stored["url"] == mesh.url
    assert (home / "config.json").stat().st_mode & 0o077 == 0  # only the user reads it
    return tenant, home


def test_everyday_commands_work_in_a_logged_in_session(mesh, tmp_path):
    tenant, home = _login(mesh, tmp_path)
    name = f"cli-agent-{uuid.uuid4().hex[:6]}"
    (tmp_path / "agent.yaml").write_text(yaml.safe_dump(
        {"name": name, "model": "gpt-4o", "description": "made by the CLI"}))
    created = _cli(mesh, home, "agents", "create", "-f", str(tmp_path / "agent.yaml"),
                   "-o", "json")
    assert created.returncode == 0, created.stderr
    agent = json.loads(created.stdout)
    assert agent["name"] == name and agent["tenant_id"] == tenant.tenant_id

    listed = _cli(mesh, home, "agents", "list", "--output", "json")
    assert listed.returncode == 0, listed.stderr
    assert [a["name"] for a in json.loads(listed.stdout)["items"]] == [name]
    table = _cli(mesh, home, "agents", "list")
    assert name in table.stdout and "1 in all" in table.stdout
    as_yaml = yaml.safe_load(_cli(mesh, home, "agents", "get", name, "-o", "yaml").stdout)
    assert as_yaml["id"] == agent["id"]
    # Tables: status words the same for every resource, names rather than the tenant's UUID.
    assert "draft" in table.stdout and "AGENT_STATUS" not in table.stdout
    shown = _cli(mesh, home, "agents", "get", name)
    assert name in shown.stdout and tenant.tenant_id not in shown.stdout
    assert "MODEL_STATUS" not in _cli(mesh, home, "models", "list").stdout

    slug = f"cli-flow-{uuid.uuid4().hex[:6]}"
    (tmp_path / "flow.json").write_text(json.dumps({"name": slug, "steps": [
        {"id": "prepare", "type": "STEP_TYPE_TRANSFORM",
         "transform": {"expression": "{topic: inputs.topic}"}},
        {"id": "write", "type": "STEP_TYPE_TRANSFORM", "depends_on": ["prepare"],
         "transform": {"expression": "join(' ', ['report on', inputs.topic])"}}],
        "outputs": {"report": "steps.write.output"}}))
    (tmp_path / "inputs.json").write_text(json.dumps({"topic": "terminals"}))
    assert _cli(mesh, home, "workflows", "create", "-f", str(tmp_path / "flow.json")).returncode == 0
    assert _cli(mesh, home, "workflows", "activate", slug).returncode == 0
    run = _cli(mesh, home, "workflows", "run", slug, "--input", str(tmp_path / "inputs.json"),
               "--watch")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "✓ prepare" in run.stdout and "✓ write" in run.stdout  # the phases as they ended
    assert "100%" in run.stdout and "completed" in run.stdout
    assert "report on terminals" in run.stdout
    # Scripts: --output json with --watch prints the final execution only (progress on stderr).
    scripted = _cli(mesh, home, "workflows", "run", slug, "--input",
                    str(tmp_path / "inputs.json"), "--watch", "-o", "json")
    assert scripted.returncode == 0, scripted.stderr
    assert json.loads(scripted.stdout)["outputs"] == {"report": "report on terminals"}

    deleted = _cli(mesh, home, "agents", "delete", name, "--yes")
    assert deleted.returncode == 0, deleted.stderr


def test_failed_workflow_exits_non_zero_and_errors_are_one_line(mesh, tmp_path):
    _, home = _login(mesh, tmp_path)
    slug = f"cli-fail-{uuid.uuid4().hex[:6]}"
    (tmp_path / "flow.yaml").write_text(yaml.safe_dump({"name": slug, "steps": [
        # The mesh's egress guard refuses loopback addresses: the step fails at once.
        {"id": "boom", "type": "STEP_TYPE_HTTP", "http": {"url": "http://127.0.0.1:9/"},
         "retry_policy": {"max_attempts": 1}}]}))
    _cli(mesh, home, "workflows", "create", "-f", str(tmp_path / "flow.yaml"))
    _cli(mesh, home, "workflows", "activate", slug)
    run = _cli(mesh, home, "workflows", "run", slug, "--watch")
    assert run.returncode == 1, run.stdout + run.stderr
    assert "failed" in run.stdout and "boom" in run.stdout

    missing = _cli(mesh, home, "agents", "get", "no-such-agent")
    assert missing.returncode == 5  # not found (agentmesh_client/cli/exits.py)
    assert "Traceback" not in missing.stderr
    assert "not found" in missing.stderr and "correlation id" in missing.stderr

    logged_out = _cli(mesh, tmp_path / "nobody", "agents", "list")
    assert logged_out.returncode == 3 and "Traceback" not in logged_out.stderr
    assert "UNAUTHENTICATED" in logged_out.stderr and "agentmesh login" in logged_out.stderr


def test_expired_access_token_is_refreshed_and_stored(mesh, tmp_path):
    _, home = _login(mesh, tmp_path)
    config_file = home / "config.json"
    data = json.loads(config_file.read_text())
    stored = dict(_context(home))
    data["contexts"][data["current_context"]]["access_token"] = "expired.or.revoked"
    config_file.write_text(json.dumps(data))
    listed = _cli(mesh, home, "agents", "list", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    again = _context(home)
    assert again["access_token"] not in ("expired.or.revoked", stored["access_token"])
    assert again["refresh_token"] != stored["refresh_token"]  # refresh tokens are single use


def test_chat_and_calls_tail(egress_mesh, model_server, tmp_path):
    tenant, home = _login(egress_mesh, tmp_path)
    suffix = uuid.uuid4().hex[:6]
    script = model_server.script(f"cli-script-{suffix}", [{"content": "Hello from the mesh"}])
    with egress_mesh.client(tenant.token) as client:
        assert client.post("/api/v1/master-data/secrets", json={
            "name": f"key-{suffix}", "value": "sk-cli", "secret_type": "SECRET_TYPE_API_KEY"}
        ).status_code == 200
        assert client.post("/api/v1/master-data/models", json={
            "name": f"model-{suffix}", "provider": "openai_compatible", "model_id": script,
            "endpoint_url": model_server.base_url, "secret_ref": f"key-{suffix}"}
        ).status_code == 200
        agent = client.post("/api/v1/agents", json={"name": f"chatty-{suffix}",
                                                    "model": f"model-{suffix}"}).json()
        assert client.post(f"/api/v1/agents/{agent['id']}/activate", json={}).status_code == 200
    env = {**os.environ, "AGENTMESH_CONFIG_DIR": str(home), "AGENTMESH_URL": egress_mesh.url}
    tail = subprocess.Popen([sys.executable, "-m", "mesh.cli", "calls", "tail", "-o", "json",
                             "--count", "2"], env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        first = json.loads(tail.stdout.readline())  # the socket is open: the current state
        assert first["type"] == "state" and first["payload"] == {"active_calls": []}
        # Not streamed: the socket then carries the call's start and end only (a streamed
        # reply adds its tokens, tests/e2e/test_streaming.py).
        chat = _cli(egress_mesh, home, "agents", "chat", agent["name"], "--no-stream",
                    input_text="hi\n/exit\n")
        assert chat.returncode == 0, chat.stderr
        assert "Hello from the mesh" in chat.stdout
        out, errors = tail.communicate(timeout=60)
    finally:
        tail.kill()
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["type"] for e in events] == ["call.started", "call.ended"], (events, errors)
    assert events[1]["payload"]["status"] == "CALL_STATUS_COMPLETED"
    assert events[0]["seq"] < events[1]["seq"]


def test_readme_python_client_example(mesh, tmp_path):
    """The five lines of the README, run as written against the real mesh."""
    tenant = register(mesh)
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
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
        URL, EMAIL, PASSWORD, WORKFLOW = {mesh.url!r}, {tenant.email!r}, {tenant.password!r}, \\
            {slug!r}
        """) + example
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "EXECUTION_STATUS_COMPLETED" in result.stdout
    assert "report on" in result.stdout


def test_usage_errors_print_the_usage_and_exit_2_without_a_traceback(tmp_path):
    for args in USAGE_ERRORS:
        result = subprocess.run([sys.executable, "-m", "mesh.cli", *args], text=True,
                                capture_output=True, timeout=60,
                                env={**os.environ, "AGENTMESH_CONFIG_DIR": str(tmp_path)})
        output = result.stdout + result.stderr
        assert result.returncode == 2, (args, output)
        assert "Usage: agentmesh" in output, (args, output)
        assert "Traceback" not in output and "Exception" not in output, (args, output)


def test_files_that_do_not_parse_and_an_unreachable_mesh_are_one_line(mesh, tmp_path):
    _, home = _login(mesh, tmp_path)
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n  model: gpt-4o\n")
    (tmp_path / "bad.json").write_text('{"name": ')
    for name, words in (("bad.yaml", "is not valid YAML"), ("bad.json", "is not valid JSON")):
        result = _cli(mesh, home, "agents", "create", "-f", str(tmp_path / name))
        assert result.returncode == 7, result.stderr  # invalid input
        assert "Traceback" not in result.stderr and words in result.stderr
        assert name in result.stderr and len(result.stderr.strip().splitlines()) <= 2
    # login without --url: the URL of the saved session (or the default) is the one named.
    from mesh.supervisor import stable_port

    closed = f"http://127.0.0.1:{stable_port()}"
    (tmp_path / "away").mkdir()
    (tmp_path / "away" / "config.json").write_text(json.dumps({"url": closed}))
    env = {**os.environ, "AGENTMESH_CONFIG_DIR": str(tmp_path / "away"), "NO_COLOR": "1"}
    env.pop("AGENTMESH_URL", None)
    result = subprocess.run([sys.executable, "-m", "mesh.cli", "login", "--email", "a@b.co",
                             "--password", "whatever1"], env=env, text=True,
                            capture_output=True, timeout=60)
    assert result.returncode == 9 and "Traceback" not in result.stderr  # unreachable
    assert f"cannot reach the mesh at {closed}" in " ".join(result.stderr.split())


def _in_a_terminal(args: list[str], env: dict[str, str], answer: bytes, after: bytes
                   ) -> tuple[int, str]:
    """Runs the CLI in a pseudo-terminal (prompts need one), types `answer` once `after` is
    shown; the exit code and everything it printed."""
    import pty
    import select
    import time

    pid, fd = pty.fork()
    if pid == 0:  # the child: the CLI
        os.environ.update(env)
        os.environ.pop("AGENTMESH_TOKEN", None)
        os.execv(sys.executable, [sys.executable, "-m", "mesh.cli", *args])
    shown, sent, deadline = b"", False, time.monotonic() + 60
    while time.monotonic() < deadline:
        if select.select([fd], [], [], 0.2)[0]:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the child has gone
                break
            if not chunk:
                break
            shown += chunk
        if not sent and after in shown:
            os.write(fd, answer)
            sent = True
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), shown.decode(errors="replace")


def test_no_at_a_prompt_and_ctrl_c_at_the_password_prompt_end_quietly(mesh, tmp_path):
    tenant, home = _login(mesh, tmp_path)
    env = {"AGENTMESH_CONFIG_DIR": str(home), "AGENTMESH_URL": mesh.url, "NO_COLOR": "1"}
    with mesh.client(tenant.token) as client:
        name = client.post("/api/v1/agents", json={
            "name": f"kept-{uuid.uuid4().hex[:6]}"}).json()["name"]
    code, shown = _in_a_terminal(["agents", "delete", name], env, b"n\r", b"[y/N]")
    assert code == 1 and "aborted" in shown and "Traceback" not in shown, shown
    with mesh.client(tenant.token) as client:
        assert client.get(f"/api/v1/agents/{name}").status_code == 200  # still there
    code, shown = _in_a_terminal(["login", "--email", tenant.email], env, b"\x03", b"Password")
    assert code != 0 and "Traceback" not in shown and "KeyboardInterrupt" not in shown, shown


def test_python_client_update_changes_a_resource(mesh):
    from agentmesh_client import Client

    tenant = register(mesh)
    name = f"upd-{uuid.uuid4().hex[:6]}"
    with Client(mesh.url) as api:
        api.login(tenant.email, tenant.password)
        api.agents.create({"name": name, "description": "before"})
        updated = api.agents.update(name, {"description": "after"})
        assert updated["description"] == "after"
        assert api.agents.get(name)["description"] == "after"
        masked = api.agents.update(name, {"description": "", "model": "gpt-4o"},
                                   update_mask="description")
        assert masked["description"] == "" and masked["model"] == ""
