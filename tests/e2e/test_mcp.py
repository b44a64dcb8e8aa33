"""The MCP endpoint through the real gateway, with the official `mcp` client SDK (Streamable
HTTP): a tenant's agents, workflows and tools as tools and its prompts as prompts, behind an
API key, its scopes, governance and the audit trail (docs/mcp.md)."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx2
from mcp import types
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.conftest import register

CLIENT = "e2e-mcp-client"


def _name(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _ok(reply):
    assert reply.status_code == 200, reply.text
    return reply.json()


def _key(client, scopes) -> str:
    return _ok(client.post("/api/v1/auth/api-keys", json={"name": _name("mcp"),
                                                          "scopes": scopes}))["key"]


async def _session(mesh, key, work, bearer=False, message_handler=None, modern=False):
    headers = {"Authorization": f"Bearer {key}"} if bearer else {"X-API-Key": key}
    async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
        async with streamable_http_client(f"{mesh.url}/api/v1/mcp", http_client=http) as (r, w):
            async with ClientSession(r, w, client_info=types.Implementation(
                    name=CLIENT, version="1.0"), message_handler=message_handler) as session:
                if modern:  # the SDK's current revision: no handshake, every request whole
                    await session.discover()
                else:
                    await session.initialize()
                return await work(session)


def _run(mesh, key, work, bearer=False, message_handler=None, modern=False):
    return asyncio.run(asyncio.wait_for(
        _session(mesh, key, work, bearer, message_handler, modern), 120))


@pytest.fixture(scope="module")
def world(egress_mesh, model_server):
    """A tenant with a running agent (on the scripted model), an active workflow, an active
    tool and a prompt labelled production; another tenant with an agent of its own."""
    owner = register(egress_mesh)
    other = register(egress_mesh, "globex")
    with egress_mesh.client(owner.token) as client:
        script = model_server.script(_name("script"), [{"content": "Hello from MCP: {user}"}])
        secret = _name("key")
        _ok(client.post("/api/v1/master-data/secrets", json={
            "name": secret, "value": "sk-e2e", "secret_type": "SECRET_TYPE_API_KEY"}))
        model = _ok(client.post("/api/v1/master-data/models", json={
            "name": _name("model"), "provider": "openai_compatible", "model_id": script,
            "endpoint_url": model_server.base_url, "secret_ref": secret}))
        agent = _ok(client.post("/api/v1/agents", json={
            "name": _name("helper"), "model": model["name"], "description": "Answers politely.",
            "system_prompt": "Be brief."}))
        agent = _ok(client.post(f"/api/v1/agents/{agent['id']}/activate", json={}))
        draft = _ok(client.post("/api/v1/agents", json={"name": _name("draft")}))
        tool = _ok(client.post("/api/v1/tools", json={
            "name": _name("calc"), "type": "TOOL_TYPE_BUILTIN", "status": "TOOL_STATUS_ACTIVE",
            "description": "Evaluates arithmetic.", "builtin": {"builtin_name": "math"},
            "input_schema": {"type": "object", "properties": {"expression": {"type": "string"}},
                             "required": ["expression"]}}))
        workflow = _ok(client.post("/api/v1/workflows", json={
            "name": _name("double"), "description": "Doubles a number.",
            "input_schema": {"type": "object", "properties": {"n": {"type": "integer"}},
                             "required": ["n"]},
            "steps": [
                {"id": "first", "type": "STEP_TYPE_TRANSFORM",
                 "transform": {"expression": "{n: inputs.n}"}},
                {"id": "second", "type": "STEP_TYPE_TRANSFORM", "depends_on": ["first"],
                 "transform": {"expression": "[steps.first.output.n, steps.first.output.n]"}}],
            "outputs": {"pair": "steps.second.output"}}))
        workflow = _ok(client.post(f"/api/v1/workflows/{workflow['id']}/activate", json={}))
        prompt = _ok(client.post("/api/v1/master-data/prompts", json={
            "name": _name("greeting"), "description": "Greets a customer.",
            "content": "Hello {{ customer }}, welcome to {{ shop }}.",
            "variables": [{"name": "customer", "required": True},
                          {"name": "shop", "required": True}]}))
        _ok(client.put(f"/api/v1/master-data/prompts/{prompt['id']}/labels/production",
                       json={"version": 1}))
        full_key = _ok(client.post("/api/v1/auth/api-keys", json={
            "name": _name("mcp"), "scopes": ["agents:execute", "workflows:execute",
                                             "tools:execute", "masterdata:read"]}))
        full = full_key["key"]
        agents_only = _key(client, ["agents:execute"])
        nothing = _key(client, ["calls:read"])
    with egress_mesh.client(other.token) as client:
        foreign = _ok(client.post("/api/v1/agents", json={"name": _name("foreign")}))
        _ok(client.post(f"/api/v1/agents/{foreign['id']}/activate", json={}))
    return {"owner": owner, "agent": agent, "draft": draft, "tool": tool, "workflow": workflow,
            "prompt": prompt, "foreign": foreign, "full": full, "full_id": full_key["id"],
            "agents_only": agents_only, "nothing": nothing}


def test_initialize_and_list_this_tenants_agents_workflows_tools_and_prompts(egress_mesh, world):
    async def work(session):
        tools = (await session.list_tools()).tools
        prompts = (await session.list_prompts()).prompts
        return session.initialize_result, tools, prompts

    init, tools, prompts = _run(egress_mesh, world["full"], work)
    assert init.server_info.name == "agentmesh"
    assert init.capabilities.tools is not None and init.capabilities.prompts is not None
    by_name = {t.name: t for t in tools}
    agent = by_name[f"agent_{world['agent']['name']}"]
    assert agent.description == "Answers politely."
    assert agent.input_schema["required"] == ["message"]
    assert set(agent.input_schema["properties"]) == {"message", "thread_id", "version", "label"}
    flow = by_name[f"workflow_{world['workflow']['slug']}"]
    assert flow.description == "Doubles a number." and flow.input_schema["required"] == ["n"]
    tool = by_name[f"tool_{world['tool']['name']}"]
    assert tool.input_schema["properties"] == {"expression": {"type": "string"}}
    # no draft, no other tenant's; and the pair for long runs
    assert set(by_name) == {agent.name, flow.name, tool.name, "mesh_start_workflow",
                            "mesh_get_execution"}
    assert f"agent_{world['foreign']['name']}" not in by_name
    assert f"agent_{world['draft']['name']}" not in by_name
    [prompt] = prompts
    assert prompt.name == world["prompt"]["name"]
    assert {(a.name, a.required) for a in prompt.arguments} == {("customer", True),
                                                                ("shop", True)}


def test_an_access_token_works_as_a_key_does(egress_mesh, world):
    async def work(session):
        return [t.name for t in (await session.list_tools()).tools]

    names = _run(egress_mesh, world["owner"].token, work, bearer=True)
    assert f"agent_{world['agent']['name']}" in names and f"tool_{world['tool']['name']}" in names


def test_call_an_agent_recorded_as_a_call_with_the_key_and_the_client(egress_mesh, world):
    async def work(session):
        return await session.call_tool(f"agent_{world['agent']['name']}", {"message": "hi there"})

    result = _run(egress_mesh, world["full"], work)
    assert not result.is_error, result
    assert result.content[0].text == "Hello from MCP: hi there"
    call_id = result.structured_content["call_id"]
    with egress_mesh.client(world["owner"].token) as client:
        listed = _ok(client.get("/api/v1/calls", params={"agent_id": world["agent"]["id"]}))
        call = next(c for c in listed["items"] if c["id"] == call_id)
        assert call["status"] == "CALL_STATUS_COMPLETED"
        assert call["metadata"]["channel"] == "mcp" and call["metadata"]["mcp_client"] == CLIENT
        assert call["metadata"]["api_key_id"] == world["full_id"]


def test_an_agent_runs_the_version_or_label_the_call_names(egress_mesh, model_server):
    """Issue 29 over MCP: `version` or `label` picks what runs, and the call records it; a bad
    version is an MCP error naming the field. (A tenant of its own: the module's listings stay
    as they are.)"""
    owner = register(egress_mesh, "versions")
    with egress_mesh.client(owner.token) as client:
        secret = _name("key")
        _ok(client.post("/api/v1/master-data/secrets", json={
            "name": secret, "value": "sk-e2e", "secret_type": "SECRET_TYPE_API_KEY"}))
        models = [_ok(client.post("/api/v1/master-data/models", json={
            "name": _name(f"model-{i}"), "provider": "openai_compatible",
            "model_id": model_server.script(_name("s"), [{"content": f"{words}: {{user}}"}]),
            "endpoint_url": model_server.base_url, "secret_ref": secret}))
            for i, words in enumerate(["Version one", "Version two"])]
        agent = _ok(client.post("/api/v1/agents", json={
            "name": _name("versioned"), "model": models[0]["name"]}))
        agent = _ok(client.post(f"/api/v1/agents/{agent['id']}/activate", json={}))
        edited = _ok(client.put(f"/api/v1/agents/{agent['id']}",
                                json={"model": models[1]["name"]}))
        newest = edited["version"]
        _ok(client.put(f"/api/v1/agents/{agent['id']}/labels/canary", json={"version": newest}))
        key = _key(client, ["agents:execute"])

    async def work(session):
        name = f"agent_{agent['name']}"
        first = await session.call_tool(name, {"message": "hi", "version": 1})
        labelled = await session.call_tool(name, {"message": "hi", "label": "canary"})
        with pytest.raises(MCPError) as raised:
            await session.call_tool(name, {"message": "hi", "version": "two"})
        return first, labelled, raised.value

    first, labelled, bad = _run(egress_mesh, key, work)
    assert first.content[0].text == "Version one: hi", first
    assert labelled.content[0].text == "Version two: hi", labelled
    assert bad.error.code == -32602 and "version" in bad.error.message
    with egress_mesh.client(owner.token) as client:
        calls = {c["id"]: c for c in _ok(client.get(
            "/api/v1/calls", params={"agent_id": agent["id"], "page_size": 100}))["items"]}
    assert calls[first.structured_content["call_id"]]["agent_version"] == 1
    assert calls[labelled.structured_content["call_id"]]["agent_version"] == newest
    assert calls[labelled.structured_content["call_id"]]["agent_label"] == "canary"


def test_the_current_protocol_revision_lists_and_calls_too(egress_mesh, world):
    """A client of the SDK's current revision (`server/discover`, no session): the same
    listing, and its calls carry its name."""
    async def work(session):
        tools = (await session.list_tools()).tools
        answer = await session.call_tool(f"agent_{world['agent']['name']}",
                                         {"message": "modern"})
        return session.protocol_version, tools, answer

    version, tools, answer = _run(egress_mesh, world["full"], work, modern=True)
    assert version not in ("2025-06-18", "2025-11-25", "2025-03-26"), version
    assert f"agent_{world['agent']['name']}" in {t.name for t in tools}
    assert not answer.is_error and answer.content[0].text == "Hello from MCP: modern"
    with egress_mesh.client(world["owner"].token) as client:
        call = _ok(client.get(f"/api/v1/calls/{answer.structured_content['call_id']}"))
    assert call["metadata"]["mcp_client"] == CLIENT


def test_an_agents_reply_streams_as_progress_when_the_client_takes_it(egress_mesh, world):
    pieces: list[str] = []

    async def on_progress(value, total, message):
        pieces.append(message)

    async def work(session):
        return await session.call_tool(f"agent_{world['agent']['name']}",
                                       {"message": "stream it"}, progress_callback=on_progress)

    result = _run(egress_mesh, world["full"], work)
    assert not result.is_error, result
    assert result.content[0].text == "Hello from MCP: stream it"
    assert len(pieces) > 1 and "".join(pieces) == "Hello from MCP: stream it"


def test_call_a_workflow_with_progress_and_outputs(egress_mesh, world):
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(value, total, message):
        progress.append((value, total, message))

    async def work(session):
        return await session.call_tool(f"workflow_{world['workflow']['slug']}", {"n": 21},
                                       progress_callback=on_progress)

    result = _run(egress_mesh, world["full"], work)
    assert not result.is_error, result
    assert result.structured_content["outputs"] == {"pair": [21, 21]}
    assert result.structured_content["status"] == "EXECUTION_STATUS_COMPLETED"
    assert progress, "no progress notification arrived"
    assert progress[-1][0] == 100 and all(total == 100 for _, total, _ in progress)
    execution_id = result.structured_content["execution_id"]
    assert execution_id in progress[0][2]  # the first notification names the execution
    with egress_mesh.client(world["owner"].token) as client:
        execution = _ok(client.get(f"/api/v1/workflows/executions/{execution_id}"))
    assert execution["metadata"] == {"channel": "mcp", "mcp_client": CLIENT}
    assert execution["api_key_id"] == world["full_id"]


def test_a_long_run_without_holding_the_connection(egress_mesh, world):
    """mesh_start_workflow answers the execution's id at once; mesh_get_execution, in another
    session, waits for its end and has its outputs."""
    async def start(session):
        return await session.call_tool("mesh_start_workflow", {
            "workflow": world["workflow"]["slug"], "inputs": {"n": 4}})

    started = _run(egress_mesh, world["full"], start)
    assert not started.is_error, started
    execution_id = started.structured_content["execution_id"]

    async def follow(session):
        return await session.call_tool("mesh_get_execution", {
            "execution_id": execution_id, "wait_seconds": 30})

    done = _run(egress_mesh, world["full"], follow)
    assert not done.is_error, done
    assert done.structured_content["status"] == "EXECUTION_STATUS_COMPLETED"
    assert done.structured_content["outputs"] == {"pair": [4, 4]}

    async def wrong(session):
        with pytest.raises(MCPError) as raised:
            await session.call_tool("mesh_get_execution", {"execution_id": execution_id,
                                                           "wait_seconds": 9999})
        return raised.value

    assert "wait_seconds" in _run(egress_mesh, world["full"], wrong).error.message


def test_call_a_tool_and_get_a_prompt(egress_mesh, world):
    async def work(session):
        ran = await session.call_tool(f"tool_{world['tool']['name']}", {"expression": "6 * 7"})
        prompt = await session.get_prompt(world["prompt"]["name"],
                                          {"customer": "Ada", "shop": "Mesh Mart"})
        return ran, prompt

    ran, prompt = _run(egress_mesh, world["full"], work)
    assert not ran.is_error, ran
    assert ran.structured_content == {"result": 42}
    # Governance decided the call, as the key; the decision is in the audit trail.
    resource = f'Tool::"{world["tool"]["name"]}"'
    with egress_mesh.client(world["owner"].token) as client:
        deadline = time.monotonic() + 30
        while True:
            audit = [e for e in _ok(client.get("/api/v1/observability/audit", params={
                "action": "decision.*", "page_size": 100}))["items"]
                if e["details"].get("resource") == resource]
            if audit or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        executions = _ok(client.get(f"/api/v1/tools/{world['tool']['id']}/stats"))
    assert audit and audit[0]["api_key_id"] == world["full_id"], audit
    assert audit[0]["details"]["action"] == "call_tool"
    assert executions["total_executions"] >= 1
    assert prompt.messages[0].content.text == "Hello Ada, welcome to Mesh Mart."


def test_bad_arguments_are_an_mcp_error_naming_the_field(egress_mesh, world):
    async def work(session):
        errors = []
        for name, arguments in ((f"tool_{world['tool']['name']}", {"expression": 7}),
                                (f"workflow_{world['workflow']['slug']}", {"n": "many"}),
                                (f"agent_{world['agent']['name']}", {"mesage": "typo"})):
            with pytest.raises(MCPError) as raised:
                await session.call_tool(name, arguments)
            errors.append(raised.value)
        with pytest.raises(MCPError) as raised:
            await session.get_prompt(world["prompt"]["name"], {"customer": "Ada"})
        errors.append(raised.value)
        return errors

    tool, flow, agent, prompt = _run(egress_mesh, world["full"], work)
    assert tool.error.code == -32602 and "expression" in tool.error.message
    assert flow.error.code == -32602 and "n" in str(flow.error.data)
    assert agent.error.code == -32602 and "mesage" in agent.error.message
    assert prompt.error.code == -32602 and "shop" in prompt.error.message


def test_a_key_without_the_scope_neither_lists_nor_calls(egress_mesh, world):
    async def work(session):
        tools = (await session.list_tools()).tools
        prompts = (await session.list_prompts()).prompts
        with pytest.raises(MCPError) as raised:
            await session.call_tool(f"tool_{world['tool']['name']}", {"expression": "1 + 1"})
        return tools, prompts, raised.value

    tools, prompts, refused = _run(egress_mesh, world["agents_only"], work)
    assert [t.name for t in tools] == [f"agent_{world['agent']['name']}"]
    assert prompts == []
    assert "tools:execute" in refused.error.message
    # A key with no scope that shows anything over MCP is refused by the gateway.
    with httpx2.Client(timeout=30) as http:
        reply = http.post(f"{egress_mesh.url}/api/v1/mcp", headers={
            "X-API-Key": world["nothing"], "Accept": "application/json, text/event-stream"},
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert reply.status_code == 403, reply.text
    # And without any credential, 401.
    with httpx2.Client(timeout=30) as http:
        reply = http.post(f"{egress_mesh.url}/api/v1/mcp", json={"jsonrpc": "2.0", "id": 1,
                                                                 "method": "tools/list"})
    assert reply.status_code == 401, reply.text


def test_a_forbidding_policy_denies_the_call_with_its_reason(egress_mesh, world):
    with egress_mesh.client(world["owner"].token) as client:
        denied = _ok(client.post("/api/v1/tools", json={
            "name": _name("echo"), "type": "TOOL_TYPE_BUILTIN", "status": "TOOL_STATUS_ACTIVE",
            "builtin": {"builtin_name": "echo"}}))
        _ok(client.post("/api/v1/governance/policies", json={
            "name": _name("allow"), "cedar": "permit(principal, action, resource);"}))
        _ok(client.post("/api/v1/governance/policies", json={
            "name": _name("no-echo"),
            "cedar": f'forbid(principal, action == Action::"call_tool", '
                     f'resource == Tool::"{denied["name"]}");'}))

    async def work(session):
        return await session.call_tool(f"tool_{denied['name']}", {"text": "hi"})

    result = _run(egress_mesh, world["full"], work, bearer=True)  # the key as a bearer token
    assert result.is_error
    assert result.structured_content["reason"] == "GOVERNANCE_DENIED"
    assert "denied by governance" in result.content[0].text
    with egress_mesh.client(world["owner"].token) as client:
        decisions = _ok(client.get("/api/v1/governance/decisions", params={"allowed": "false"}))
    decision = next(d for d in decisions["items"] if d["resource"] == f'Tool::"{denied["name"]}"')
    assert decision["reason"] and decision["reason"] in result.content[0].text


def test_the_tool_list_follows_changes(egress_mesh, world):
    """A client that keeps its session open is told when what it may call changes (here a tool
    is activated), and the new listing has it."""
    seen: list[str] = []

    async def on_message(message):
        if not isinstance(message, Exception):
            seen.append(getattr(message, "method", ""))

    name = _name("fresh")

    async def work(session):
        before = {t.name for t in (await session.list_tools()).tools}
        await asyncio.sleep(1)  # the GET stream is open and has its first listing

        def add():
            with egress_mesh.client(world["owner"].token) as client:
                _ok(client.post("/api/v1/tools", json={
                    "name": name, "type": "TOOL_TYPE_BUILTIN", "status": "TOOL_STATUS_ACTIVE",
                    "builtin": {"builtin_name": "echo"}}))
        await asyncio.to_thread(add)
        deadline = time.monotonic() + 30
        while "notifications/tools/list_changed" not in seen and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        after = {t.name for t in (await session.list_tools()).tools}
        return before, after

    before, after = _run(egress_mesh, world["full"], work, message_handler=on_message)
    assert "notifications/tools/list_changed" in seen, seen
    assert after - before == {f"tool_{name}"}
