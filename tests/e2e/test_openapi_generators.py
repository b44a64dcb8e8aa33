"""Clients generated from `/api/v1/openapi.json` by the generators people use work.

* openapi-python-client generates every schema and every operation with no warning, and a
  script using that generated client lists the agents of a running mesh.
* openapi-typescript's types compile under `tsc --strict`.

Both tools are pinned in the repository and installed here, as CI runs this test:
openapi-python-client from `.ci/tools/openapi-python-client.txt` into a virtual environment of its
own (it needs an older httpx and typer than the project's), openapi-typescript and TypeScript
from `.ci/tools/openapi-typescript/package-lock.json` with `npm ci` (Node 20 and npm needed).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PY_LOCK = ROOT / ".ci" / "tools" / "openapi-python-client.txt"
TS_DIR = ROOT / ".ci" / "tools" / "openapi-typescript"
TOOLS = ROOT / ".venv" / "tools"


def _run(argv, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600, **kwargs)
    assert result.returncode == 0, (argv, result.stdout[-4000:], result.stderr[-4000:])
    return result


def _python_client_tool() -> Path:
    """The environment of openapi-python-client, made again when its lock file changes."""
    venv = TOOLS / "openapi-python-client"
    stamp = venv / "lock.sha256"
    digest = hashlib.sha256(PY_LOCK.read_bytes()).hexdigest()
    if not stamp.exists() or stamp.read_text() != digest:
        shutil.rmtree(venv, ignore_errors=True)
        _run([sys.executable, "-m", "venv", str(venv)])
        _run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
              "--no-deps", "-r", str(PY_LOCK)])
        stamp.write_text(digest)
    return venv / "bin"


def _typescript_tools() -> Path:
    npm = shutil.which("npm")
    assert npm, "npm (Node 20) is needed to check the TypeScript types"
    modules = TS_DIR / "node_modules"
    stamp = modules / ".lock.sha256"
    digest = hashlib.sha256((TS_DIR / "package-lock.json").read_bytes()).hexdigest()
    if not stamp.exists() or stamp.read_text() != digest:
        _run([npm, "ci", "--no-audit", "--no-fund"], cwd=TS_DIR)
        stamp.write_text(digest)
    return modules / ".bin"


def _document(mesh, tmp_path: Path) -> tuple[Path, dict]:
    with mesh.client() as client:
        reply = client.get("/api/v1/openapi.json")
    assert reply.status_code == 200
    path = tmp_path / "openapi.json"
    path.write_bytes(reply.content)
    return path, reply.json()


def _class_name(schema_name: str) -> str:
    """openapi-python-client's class name for a component (`agentmesh.agents.v1.Agent` ->
    `AgentmeshAgentsV1Agent`)."""
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", schema_name)
                   if part)


def test_openapi_python_client_generates_everything_and_lists_agents(mesh, tenant, tmp_path):
    tool = _python_client_tool()
    document_path, document = _document(mesh, tmp_path)
    out = tmp_path / "client"
    generated = _run([str(tool / "openapi-python-client"), "generate", "--path",
                      str(document_path), "--meta", "none", "--output-path", str(out)],
                     cwd=tmp_path, env={**os.environ, "PATH": f"{tool}:{os.environ['PATH']}"})
    said = generated.stdout + generated.stderr
    assert "WARNING" not in said and "Unable to" not in said and "Warning" not in said, said

    # Every operation is a module of its tag, every component schema a class.
    operations = [op["operationId"] for methods in document["paths"].values()
                  for op in methods.values()]
    modules = {p.stem for p in (out / "api").rglob("*.py") if p.stem != "__init__"}
    wanted = {re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower() for name in operations}
    assert all(re.fullmatch(r"\w+", name) for name in operations)
    assert len(modules) == len(operations) and wanted <= modules, sorted(wanted - modules)
    exported = (out / "models" / "__init__.py").read_text()
    missing = [name for name in document["components"]["schemas"]
               if f'"{_class_name(name)}"' not in exported]
    assert missing == []

    name = f"generated-{uuid.uuid4().hex[:6]}"
    with mesh.client(tenant.token) as client:
        assert client.post("/api/v1/agents", json={"name": name}).status_code == 200
    script = tmp_path / "list_agents.py"
    script.write_text(f"""
import json, sys
sys.path.insert(0, {str(tmp_path)!r})
from client import AuthenticatedClient
from client.api.agent_service import agent_service_list_agents

api = AuthenticatedClient(base_url=sys.argv[1], token=sys.argv[2])
page = agent_service_list_agents.sync(client=api, page_size=100)
print(json.dumps({{"total": page.total, "names": [agent.name for agent in page.items],
                   "status": [agent.status.value for agent in page.items]}}))
""")
    listed = _run([str(tool / "python"), str(script), mesh.url, tenant.token])
    answer = json.loads(listed.stdout)
    assert name in answer["names"] and answer["total"] >= 1
    assert answer["status"][answer["names"].index(name)].startswith("AGENT_STATUS_")


def test_openapi_typescript_types_compile_strictly(mesh, tmp_path):
    bin_dir = _typescript_tools()
    document_path, _ = _document(mesh, tmp_path)
    types = tmp_path / "api.d.ts"
    _run([str(bin_dir / "openapi-typescript"), str(document_path), "-o", str(types)])
    use = tmp_path / "use.ts"
    use.write_text("""import type { components, paths } from "./api";
type Agent = components["schemas"]["agentmesh.agents.v1.Agent"];
type Listed = paths["/api/v1/agents"]["get"]["responses"][200]["content"]["application/json"];
const names = (page: Listed): string[] => (page.items ?? []).map((a: Agent) => a.name);
const status: Agent["status"] = "AGENT_STATUS_ACTIVE";
export { names, status };
""")
    checked = subprocess.run([str(bin_dir / "tsc"), "--strict", "--noEmit", str(types),
                              str(use)],
                             capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout[-4000:]
