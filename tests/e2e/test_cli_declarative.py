"""The `agentmesh` command as kubectl and gh users expect it, run as a user runs it (a
subprocess with its own config dir) against real meshes: `apply -f folder/` creates, a second
run changes nothing and says so, an edited file updates only what changed; `update --set`;
contexts switch between two meshes; completion installs for bash; an exit code per kind of
failure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import yaml

from tests.conftest import register

AGENTMESH = Path(sys.executable).parent / "agentmesh"


def _cli(home: Path, *args: str, url: str | None = None, env: dict | None = None,
         timeout: float = 60) -> subprocess.CompletedProcess:
    environment = {**os.environ, "AGENTMESH_CONFIG_DIR": str(home), "COLUMNS": "160",
                   "NO_COLOR": "1", **(env or {})}
    for name in ("AGENTMESH_TOKEN", "AGENTMESH_URL", "AGENTMESH_CONTEXT", "AGENTMESH_API_KEY"):
        environment.pop(name, None)
    if url:
        environment["AGENTMESH_URL"] = url
    return subprocess.run([str(AGENTMESH), *args], env=environment, text=True,
                          capture_output=True, timeout=timeout)


def _login(mesh, home: Path, name: str = ""):
    tenant = register(mesh)
    args = ["login", "--email", tenant.email, "--password", tenant.password, "--url", mesh.url]
    result = _cli(home, *args, *(["--name", name] if name else []))
    assert result.returncode == 0, result.stderr
    return tenant


def test_apply_a_folder_twice_the_second_run_changes_nothing(mesh, tmp_path):
    home = tmp_path / "config"
    tenant = _login(mesh, home)
    suffix = uuid.uuid4().hex[:6]
    folder = tmp_path / "resources"
    folder.mkdir()
    (folder / "agents.yaml").write_text(yaml.safe_dump_all([
        {"kind": "Agent", "name": f"triage-{suffix}", "model": "gpt-4o",
         "description": "sorts the inbox"},
        {"kind": "agent", "name": f"writer-{suffix}", "description": "writes replies"}]))
    (folder / "flow.json").write_text(json.dumps({
        "kind": "Workflow", "name": f"flow-{suffix}", "steps": [
            {"id": "write", "type": "STEP_TYPE_TRANSFORM",
             "transform": {"expression": "join(' ', ['report on', inputs.topic])"}}],
        "outputs": {"report": "steps.write.output"}}))
    (folder / "secret.yml").write_text(yaml.safe_dump({
        "kind": "secrets", "name": f"key-{suffix}", "value": "sk-applied",
        "secret_type": "SECRET_TYPE_API_KEY"}))
    (folder / "policy.yaml").write_text(yaml.safe_dump({  # governance's, not a collection
        "kind": "Policy", "name": f"audit-{suffix}", "description": "allows, for the record",
        "effect": "POLICY_EFFECT_ALLOW", "priority": 5}))
    (folder / "notes.txt").write_text("not a resource: ignored")

    first = _cli(home, "apply", "-f", str(folder))
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"agent/triage-{suffix} created" in first.stdout
    assert f"workflow/flow-{suffix} created" in first.stdout
    assert f"secret/key-{suffix} created" in first.stdout
    assert f"policy/audit-{suffix} created" in first.stdout
    assert "5 created" in first.stdout
    # The secret came first: what others refer to applies before them.
    assert first.stdout.index("secret/") < first.stdout.index("agent/")

    second = _cli(home, "apply", "-f", str(folder))
    assert second.returncode == 0, second.stdout + second.stderr
    assert "nothing changed" in second.stdout, second.stdout
    assert "created" not in second.stdout and "updated" not in second.stdout
    assert second.stdout.count("unchanged") == 5

    with mesh.client(tenant.token) as client:
        agent = client.get(f"/api/v1/agents/triage-{suffix}").json()
        assert agent["description"] == "sorts the inbox"
        flow = client.get(f"/api/v1/workflows/flow-{suffix}").json()
        assert flow["steps"][0]["id"] == "write"

    # An edited file: only that resource, only the fields that differ.
    documents = list(yaml.safe_load_all((folder / "agents.yaml").read_text()))
    documents[0]["description"] = "sorts the inbox, politely"
    (folder / "agents.yaml").write_text(yaml.safe_dump_all(documents))
    third = _cli(home, "apply", "-f", str(folder), "-o", "json")
    assert third.returncode == 0, third.stderr
    report = json.loads(third.stdout)
    assert (report["updated"], report["unchanged"], report["created"]) == (1, 4, 0)
    (updated,) = [r for r in report["results"] if r["result"] == "updated"]
    assert updated == {"kind": "agent", "key": f"triage-{suffix}", "result": "updated",
                       "changed": ["description"]}
    with mesh.client(tenant.token) as client:
        agent = client.get(f"/api/v1/agents/triage-{suffix}").json()
        assert agent["description"] == "sorts the inbox, politely"
        assert agent["model"] == "gpt-4o"  # untouched


def test_update_and_apply_errors_have_their_own_exit_codes(mesh, tmp_path):
    home = tmp_path / "config"
    _login(mesh, home)
    name = f"upd-{uuid.uuid4().hex[:6]}"
    (tmp_path / "agent.yaml").write_text(yaml.safe_dump({"name": name, "model": "gpt-4o"}))
    assert _cli(home, "agents", "create", "-f", str(tmp_path / "agent.yaml")).returncode == 0
    updated = _cli(home, "agents", "update", name, "--set", "description=from the CLI",
                   "-o", "json")
    assert updated.returncode == 0, updated.stderr
    assert json.loads(updated.stdout)["description"] == "from the CLI"
    assert json.loads(updated.stdout)["model"] == "gpt-4o"

    # Any RPC of the contract, services without a resource group included.
    policies = _cli(home, "call", "governance.list_policies", "--set", "page_size=5")
    assert policies.returncode == 0, policies.stderr
    assert json.loads(policies.stdout)["page_size"] == 5
    stats = _cli(home, "call", "agents.get_agent_stats", name)
    assert stats.returncode == 0 and "total_calls" in json.loads(stats.stdout), stats.stdout
    rpcs = _cli(home, "rpcs").stdout.split()
    assert {r.split(".")[0] for r in rpcs} >= {"governance", "integration", "observability"}

    missing = _cli(home, "agents", "update", "no-such-agent", "--set", "description=x")
    assert missing.returncode == 5 and "Traceback" not in missing.stderr, missing.stderr
    exists = _cli(home, "agents", "create", "-f", str(tmp_path / "agent.yaml"))
    assert exists.returncode == 6, exists.stderr  # conflict: the name is taken
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.yaml").write_text(yaml.safe_dump({"kind": "Spaceship", "name": "x"}))
    unknown = _cli(home, "apply", "-f", str(tmp_path / "bad"))
    assert unknown.returncode == 7 and "Spaceship" in unknown.stderr, unknown.stderr
    assert "Traceback" not in unknown.stderr


def test_contexts_switch_between_two_meshes(mesh, egress_mesh, tmp_path):
    home = tmp_path / "config"
    first = _login(mesh, home, name="first")
    second = _login(egress_mesh, home, name="second")
    listed = _cli(home, "config", "get-contexts")
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[-3] if line.lstrip().startswith("*") else line.split()[0]: line
            for line in listed.stdout.splitlines()[1:] if line.strip()}
    assert set(rows) == {"first", "second"}
    assert rows["second"].lstrip().startswith("*")  # the last login selected its context
    assert mesh.url in rows["first"] and egress_mesh.url in rows["second"]

    name = f"ctx-{uuid.uuid4().hex[:6]}"
    (tmp_path / "agent.yaml").write_text(yaml.safe_dump({"name": name}))
    assert _cli(home, "agents", "create", "-f", str(tmp_path / "agent.yaml")).returncode == 0
    with egress_mesh.client(second.token) as client:
        assert client.get(f"/api/v1/agents/{name}").status_code == 200
    with mesh.client(first.token) as client:
        assert client.get(f"/api/v1/agents/{name}").status_code == 404

    switched = _cli(home, "config", "use-context", "first")
    assert switched.returncode == 0 and "first" in switched.stdout
    assert _cli(home, "config", "current-context").stdout.strip() == "first"
    here = _cli(home, "agents", "list", "-o", "json")
    assert here.returncode == 0 and name not in here.stdout
    # --context: another context for one command, the current one stays.
    there = _cli(home, "--context", "second", "agents", "get", name, "-o", "json")
    assert there.returncode == 0 and json.loads(there.stdout)["name"] == name
    assert _cli(home, "config", "current-context").stdout.strip() == "first"
    nowhere = _cli(home, "config", "use-context", "third")
    assert nowhere.returncode == 5 and "no context named 'third'" in nowhere.stderr
    assert "Traceback" not in nowhere.stderr


def test_completion_installs_for_bash_and_completes(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "SHELL": "/bin/bash"}
    installed = _cli(tmp_path, "--install-completion", "bash", env=env)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    script = home / ".bash_completions" / "agentmesh.sh"
    assert script.is_file() and "_AGENTMESH_COMPLETE" in script.read_text()
    assert f"source '{script}'" in (home / ".bashrc").read_text()
    printed = _cli(tmp_path, "completion", "bash")
    assert printed.returncode == 0 and "complete " in printed.stdout
    # What bash asks the command when Tab is pressed after `agentmesh config u`.
    answer = _cli(tmp_path, env={**env, "_AGENTMESH_COMPLETE": "complete_bash",
                                 "COMP_WORDS": "agentmesh config u", "COMP_CWORD": "2"})
    assert answer.stdout.split() == ["use-context"], answer
    answer = _cli(tmp_path, env={**env, "_AGENTMESH_COMPLETE": "complete_bash",
                                 "COMP_WORDS": "agentmesh ap", "COMP_CWORD": "1"})
    assert answer.stdout.split() == ["apply"], answer
    # A real bash sources it and offers the same.
    probe = subprocess.run(
        ["bash", "-c", f"source '{script}'; COMP_WORDS=(agentmesh ap); COMP_CWORD=1; "
                       "_agentmesh_completion agentmesh; echo ${COMPREPLY[@]}"],
        env={**os.environ, **env, "PATH": f"{AGENTMESH.parent}:{os.environ['PATH']}"},
        text=True, capture_output=True, timeout=60)
    assert probe.stdout.split() == ["apply"], probe
