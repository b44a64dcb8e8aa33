"""The tools service alone, in-process: definitions, execution of the three types, the egress
guard, stats; asserted by gRPC code, reason and what the caller gets back."""

from __future__ import annotations

import uuid

import grpc
import pytest
from google.protobuf import json_format

from agentmesh.tools.v1 import tools_pb2 as pb
from tests.harness import Identity, error_reason, field_violations


def _name(prefix="tool"):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _create(stub, me, **fields) -> pb.Tool:
    fields.setdefault("name", _name())
    fields.setdefault("status", "TOOL_STATUS_ACTIVE")
    tool = json_format.ParseDict(fields, pb.Tool())
    return stub.CreateTool(pb.CreateToolRequest(tool=tool), metadata=me.metadata())


def _execute(stub, me, tool, arguments) -> pb.ToolExecution:
    request = pb.ExecuteToolRequest(tool_id=tool if isinstance(tool, str) else tool.id)
    request.arguments.update(arguments)
    return stub.ExecuteTool(request, metadata=me.metadata())


def _output(execution) -> dict:
    return json_format.MessageToDict(execution.output)


def _fails(fn, code):
    with pytest.raises(grpc.RpcError) as caught:
        fn()
    assert caught.value.code() == code, caught.value.details()
    return caught.value


# ---- definitions ------------------------------------------------------------------------------
def test_create_get_by_id_and_name_update_delete(stub, me):
    tool = _create(stub, me, type="TOOL_TYPE_BUILTIN", builtin={"builtin_name": "echo"},
                   category="util", labels={"team": "a"})
    assert tool.status == pb.TOOL_STATUS_ACTIVE and tool.version == 1
    assert json_format.MessageToDict(tool.input_schema) == {"type": "object"}  # builtin default
    by_name = stub.GetTool(pb.GetToolRequest(tool_id=tool.name), metadata=me.metadata())
    assert by_name == stub.GetTool(pb.GetToolRequest(tool_id=tool.id), metadata=me.metadata())
    updated = stub.UpdateTool(pb.UpdateToolRequest(
        tool_id=tool.name, tool=pb.Tool(description="echoes")), metadata=me.metadata())
    assert updated.description == "echoes" and updated.version == 2
    assert updated.builtin.builtin_name == "echo" and updated.category == "util"
    # Switching type replaces the typed config.
    switched = stub.UpdateTool(pb.UpdateToolRequest(tool_id=tool.id, tool=pb.Tool(
        type=pb.TOOL_TYPE_BUILTIN, builtin=pb.BuiltinToolConfig(builtin_name="math"))),
        metadata=me.metadata())
    assert switched.builtin.builtin_name == "math" and switched.version == 3
    deleted = stub.DeleteTool(pb.DeleteToolRequest(tool_id=tool.id), metadata=me.metadata())
    assert deleted.success
    error = _fails(lambda: stub.GetTool(pb.GetToolRequest(tool_id=tool.id),
                                        metadata=me.metadata()), grpc.StatusCode.NOT_FOUND)
    assert error_reason(error) == "TOOL_NOT_FOUND"


def test_definition_errors_name_the_field(stub, me):
    error = _fails(lambda: _create(stub, me, type="TOOL_TYPE_HTTP",
                                   builtin={"builtin_name": "echo"}),
                   grpc.StatusCode.INVALID_ARGUMENT)
    assert "http" in field_violations(error)
    error = _fails(lambda: _create(stub, me, type="TOOL_TYPE_BUILTIN",
                                   builtin={"builtin_name": "nope"}),
                   grpc.StatusCode.INVALID_ARGUMENT)
    assert field_violations(error) == ["builtin.builtin_name"]
    error = _fails(lambda: _create(stub, me, type="TOOL_TYPE_BUILTIN",
                                   builtin={"builtin_name": "echo"},
                                   input_schema={"type": "nonsense"}),
                   grpc.StatusCode.INVALID_ARGUMENT)
    assert field_violations(error)[0].startswith("input_schema")
    error = _fails(lambda: _create(stub, me, name="types", type="TOOL_TYPE_BUILTIN",
                                   builtin={"builtin_name": "echo"}),
                   grpc.StatusCode.INVALID_ARGUMENT)
    assert field_violations(error) == ["name"]
    error = _fails(lambda: _create(stub, me, type="TOOL_TYPE_BUILTIN", status="TOOL_STATUS_DEPLOYED",
                                   builtin={"builtin_name": "echo"}),
                   grpc.StatusCode.INVALID_ARGUMENT)
    assert field_violations(error) == ["status"]
    error = _fails(lambda: _create(stub, me, type="TOOL_TYPE_HTTP", http={
        "url": "http://127.0.0.1/{missing}"}), grpc.StatusCode.INVALID_ARGUMENT)
    assert field_violations(error) == ["http.url"]
    error = _fails(lambda: _create(stub, me, type="TOOL_TYPE_HTTP", http={
        "url": "http://127.0.0.1/", "headers": {"X-Key": "${secrets.unknown-one}"}}),
        grpc.StatusCode.INVALID_ARGUMENT)
    assert error_reason(error) == "SECRET_NOT_FOUND"


def test_other_tenant_gets_not_found(stub, me):
    tool = _create(stub, me, type="TOOL_TYPE_BUILTIN", builtin={"builtin_name": "echo"})
    other = Identity()
    for call in (lambda: stub.GetTool(pb.GetToolRequest(tool_id=tool.id), metadata=other.metadata()),
                 lambda: _execute(stub, other, tool, {}),
                 lambda: stub.GetToolStats(pb.GetToolStatsRequest(tool_id=tool.name),
                                           metadata=other.metadata())):
        assert error_reason(_fails(call, grpc.StatusCode.NOT_FOUND)) == "TOOL_NOT_FOUND"


def test_categories_and_types_count_the_tenants_tools(stub):
    me = Identity()
    _create(stub, me, type="TOOL_TYPE_BUILTIN", builtin={"builtin_name": "echo"}, category="b")
    _create(stub, me, type="TOOL_TYPE_BUILTIN", builtin={"builtin_name": "math"}, category="a")
    _create(stub, me, type="TOOL_TYPE_HTTP", http={"url": "http://127.0.0.1/x"}, category="a")
    categories = stub.ListToolCategories(pb.ListToolCategoriesRequest(), metadata=me.metadata())
    assert [(c.name, c.count) for c in categories.items] == [("a", 2), ("b", 1)]
    assert categories.total == 2 and categories.pages == 1
    types = stub.ListToolTypes(pb.ListToolTypesRequest(), metadata=me.metadata())
    assert [(t.name, t.count) for t in types.items] == [("http", 1), ("builtin", 2), ("mcp", 0)]
    listed = stub.ListTools(pb.ListToolsRequest(type=pb.TOOL_TYPE_BUILTIN, order_by="name"),
                            metadata=me.metadata())
    assert listed.total == 2


# ---- builtin ----------------------------------------------------------------------------------
def test_builtins_run_and_are_recorded(stub, me):
    echo = _create(stub, me, type="TOOL_TYPE_BUILTIN", builtin={"builtin_name": "echo"})
    run = _execute(stub, me, echo, {"text": "hi", "n": 2})
    assert run.status == pb.TOOL_EXECUTION_STATUS_COMPLETED and _output(run) == {"text": "hi", "n": 2}
    assert json_format.MessageToDict(run.input) == {"text": "hi", "n": 2}
    assert run.caller == me.user_id and run.correlation_id and run.tool_version == 1
    assert run.started_at.seconds and run.ended_at.seconds

    maths = _create(stub, me, type="TOOL_TYPE_BUILTIN", builtin={"builtin_name": "math"})
    assert _output(_execute(stub, me, maths, {"expression": "2 * (x + 1)",
                                              "variables": {"x": 20}})) == {"result": 42}
    evil = _execute(stub, me, maths, {"expression": "__import__('os').system('true')"})
    assert evil.status == pb.TOOL_EXECUTION_STATUS_FAILED and "unsupported" in evil.error

    transform = _create(stub, me, type="TOOL_TYPE_BUILTIN",
                        builtin={"builtin_name": "json_transform"})
    out = _execute(stub, me, transform, {"data": {"people": [{"name": "a"}, {"name": "b"}]},
                                         "expression": "people[].name"})
    assert _output(out) == {"result": ["a", "b"]}

    clock = _create(stub, me, type="TOOL_TYPE_BUILTIN", builtin={"builtin_name": "current_time"})
    now = _output(_execute(stub, me, clock, {"timezone": "Europe/Paris"}))
    assert now["timezone"] == "Europe/Paris" and now["iso"][-6:] in ("+01:00", "+02:00")


def test_input_not_matching_schema_is_invalid_argument_naming_the_field(stub, me):
    tool = _create(stub, me, type="TOOL_TYPE_BUILTIN", builtin={"builtin_name": "echo"},
                   input_schema={"type": "object", "required": ["query"],
                                 "properties": {"query": {"type": "string"},
                                                "limit": {"type": "integer"}}})
    error = _fails(lambda: _execute(stub, me, tool, {"limit": 3}), grpc.StatusCode.INVALID_ARGUMENT)
    assert field_violations(error) == ["arguments.query"] and error_reason(error) == "ARGUMENTS_INVALID"
    error = _fails(lambda: _execute(stub, me, tool, {"query": "x", "limit": "many"}),
                   grpc.StatusCode.INVALID_ARGUMENT)
    assert field_violations(error) == ["arguments.limit"]


def test_output_schema_mismatch_fails_the_execution(stub, me):
    tool = _create(stub, me, type="TOOL_TYPE_BUILTIN", builtin={"builtin_name": "echo"},
                   output_schema={"type": "object", "required": ["answer"]})
    run = _execute(stub, me, tool, {"text": "no answer field"})
    assert run.status == pb.TOOL_EXECUTION_STATUS_FAILED and "output.answer" in run.error


def test_draft_tool_does_not_execute_but_tests(stub, me):
    tool = _create(stub, me, type="TOOL_TYPE_BUILTIN", builtin={"builtin_name": "echo"},
                   status="TOOL_STATUS_DRAFT")
    error = _fails(lambda: _execute(stub, me, tool, {}), grpc.StatusCode.FAILED_PRECONDITION)
    assert error_reason(error) == "TOOL_NOT_EXECUTABLE"
    request = pb.TestToolRequest(tool_id=tool.id)
    request.arguments.update({"a": 1})
    request.expected_output.update({"a": 1})
    assert stub.TestTool(request, metadata=me.metadata()).passed
    request.expected_output.update({"a": 2})
    result = stub.TestTool(request, metadata=me.metadata())
    assert not result.passed and [e.field for e in result.errors] == ["output.a"]
    stats = stub.GetToolStats(pb.GetToolStatsRequest(tool_id=tool.id), metadata=me.metadata())
    assert stats.total_executions == 0  # tests are not counted


def test_validate_and_deploy(stub, me):
    tool = _create(stub, me, type="TOOL_TYPE_BUILTIN", builtin={"builtin_name": "echo"})
    assert stub.ValidateTool(pb.ValidateToolRequest(tool_id=tool.id), metadata=me.metadata()).valid
    deployed = stub.DeployTool(pb.DeployToolRequest(tool_id=tool.id), metadata=me.metadata())
    assert deployed.status == pb.TOOL_STATUS_DEPLOYED and deployed.deployed_at.seconds
    error = _fails(lambda: stub.DeployTool(pb.DeployToolRequest(tool_id=tool.id),
                                           metadata=me.metadata()),
                   grpc.StatusCode.FAILED_PRECONDITION)
    assert error_reason(error) == "TOOL_ALREADY_DEPLOYED"
    error = _fails(lambda: stub.DeleteTool(pb.DeleteToolRequest(tool_id=tool.id),
                                           metadata=me.metadata()),
                   grpc.StatusCode.FAILED_PRECONDITION)
    assert error_reason(error) == "TOOL_DEPLOYED"
    undeployed = stub.UpdateTool(pb.UpdateToolRequest(
        tool_id=tool.id, tool=pb.Tool(status=pb.TOOL_STATUS_ACTIVE)), metadata=me.metadata())
    assert undeployed.status == pb.TOOL_STATUS_ACTIVE


def test_stats_count_executions_with_error_rate_and_percentiles(stub, me):
    tool = _create(stub, me, type="TOOL_TYPE_BUILTIN", builtin={"builtin_name": "math"})
    for expression in ("1+1", "2+2", "3+3", "1/0"):
        _execute(stub, me, tool, {"expression": expression})
    stats = stub.GetToolStats(pb.GetToolStatsRequest(tool_id=tool.name), metadata=me.metadata())
    assert (stats.total_executions, stats.successful_executions, stats.failed_executions) == (4, 3, 1)
    assert stats.error_rate == pytest.approx(0.25)
    assert stats.p95_duration_ms >= stats.p50_duration_ms >= 0 and stats.last_executed_at.seconds


# ---- http -------------------------------------------------------------------------------------
def test_http_tool_with_url_template_body_mapping_and_secret_auth(stub, me, web, masterdata):
    tool = _create(stub, me, type="TOOL_TYPE_HTTP", secret_refs=["api-token"],
                   http={"url": web.url + "/items/{item_id}", "method": "POST",
                         "headers": {"X-Trace": "t-1"}},
                   config={"auth": {"type": "bearer", "secret": "api-token"},
                           "body": {"wrapped": {"q": "{query}", "n": "{count}"}}},
                   input_schema={"type": "object", "properties": {
                       "item_id": {"type": "string"}, "query": {"type": "string"},
                       "count": {"type": "integer"}}})
    run = _execute(stub, me, tool, {"item_id": "a b", "query": "shoes", "count": 3})
    assert run.status == pb.TOOL_EXECUTION_STATUS_COMPLETED, run.error
    out = _output(run)
    assert out["path"] == "/items/a%20b" and out["body"] == {"wrapped": {"q": "shoes", "n": 3}}
    assert out["authorization"] == "Bearer ***"  # the secret is never echoed back
    assert web.requests[-1]["headers"]["Authorization"] == "Bearer s3cr3t-token-value"
    assert web.requests[-1]["headers"]["X-Trace"] == "t-1"
    assert "api-token" in masterdata.reveals

    getter = _create(stub, me, type="TOOL_TYPE_HTTP", http={"url": web.url + "/search",
                                                            "method": "GET"})
    out = _output(_execute(stub, me, getter, {"q": "x", "page": 2}))
    assert out["method"] == "GET" and out["query"] == {"q": "x", "page": "2"}


def test_http_failures_timeouts_and_size_cap(stub, me, web):
    failing = _create(stub, me, type="TOOL_TYPE_HTTP", http={"url": web.url + "/fail"})
    run = _execute(stub, me, failing, {})
    assert run.status == pb.TOOL_EXECUTION_STATUS_FAILED and run.error.startswith("HTTP 500")
    slow = _create(stub, me, type="TOOL_TYPE_HTTP",
                   http={"url": web.url + "/slow?seconds=3", "timeout": "0.5s"})
    run = _execute(stub, me, slow, {})
    assert run.status == pb.TOOL_EXECUTION_STATUS_TIMED_OUT and run.duration_ms < 2500
    big = _create(stub, me, type="TOOL_TYPE_HTTP", http={"url": web.url + "/big?bytes=5000000",
                                                         "method": "GET"})
    run = _execute(stub, me, big, {})
    assert run.status == pb.TOOL_EXECUTION_STATUS_FAILED and "limit" in run.error


@pytest.mark.parametrize("answer", ['{"x": NaN}', '{"x": 1e400}', '{"x": -Infinity}',
                                    '{"a": ' * 30 + "1" + "}" * 30])
def test_a_server_answer_no_output_can_carry_fails_the_execution(stub, me, web, answer):
    """NaN, infinities and JSON nested past what an execution can carry on: the execution
    failed, saying why (it was a 500 or 502 when the answer was printed)."""
    from urllib.parse import quote

    tool = _create(stub, me, type="TOOL_TYPE_HTTP",
                   http={"url": web.url + "/raw?body=" + quote(answer, safe=""), "method": "GET"})
    run = _execute(stub, me, tool, {})
    assert run.status == pb.TOOL_EXECUTION_STATUS_FAILED, run
    assert "cannot be carried" in run.error and not run.HasField("output")


def test_math_results_no_number_can_hold_are_invalid_argument(stub, me):
    maths = _create(stub, me, type="TOOL_TYPE_BUILTIN", builtin={"builtin_name": "math"})
    for expression in ("1e308*10", "(-8)**0.5", "10**1000", "-(1e308*10)"):
        error = _fails(lambda: _execute(stub, me, maths, {"expression": expression}),
                       grpc.StatusCode.INVALID_ARGUMENT)
        assert "RESULT_NOT_REPRESENTABLE" in str(error.trailing_metadata())


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data/",
    "http://127.0.0.1:{port}/",
    "http://localhost:{port}/",
    "http://10.0.0.1/",
    "http://[::1]:{port}/",
])
def test_ssrf_internal_targets_are_refused(strict, me, web, url):
    tool = _create(strict, me, type="TOOL_TYPE_HTTP",
                   http={"url": url.format(port=web.port), "timeout": "2s"})
    before = len(web.requests)
    error = _fails(lambda: _execute(strict, me, tool, {}), grpc.StatusCode.PERMISSION_DENIED)
    assert error_reason(error) == "EGRESS_DENIED"
    assert "refused" in error.details() and "AGENTMESH_EGRESS_ALLOW" in error.details()
    assert len(web.requests) == before  # nothing was sent
    validation = strict.ValidateTool(pb.ValidateToolRequest(tool_id=tool.id), metadata=me.metadata())
    assert not validation.valid and validation.errors[0].field == "http.url"
    # The refusal is recorded as a failed execution.
    stats = strict.GetToolStats(pb.GetToolStatsRequest(tool_id=tool.id), metadata=me.metadata())
    assert stats.failed_executions == 1


@pytest.mark.parametrize("target", ["http://127.0.0.2:{port}/", "http://169.254.169.254/"])
def test_ssrf_redirect_to_internal_address_is_refused(stub, me, web, target):
    # 127.0.0.1 is allowed for this service; the redirect's target is not.
    tool = _create(stub, me, type="TOOL_TYPE_HTTP", http={
        "url": web.url + "/redirect?to=" + target.format(port=web.port), "method": "GET"})
    error = _fails(lambda: _execute(stub, me, tool, {}), grpc.StatusCode.PERMISSION_DENIED)
    assert error_reason(error) == "EGRESS_DENIED"


# ---- mcp --------------------------------------------------------------------------------------
def test_mcp_tool_validates_against_the_server_and_executes(stub, me, mcp_server):
    tool = _create(stub, me, type="TOOL_TYPE_MCP",
                   mcp={"server_url": mcp_server.url, "tool_name": "add"},
                   input_schema={"type": "object", "required": ["a", "b"],
                                 "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}})
    assert stub.ValidateTool(pb.ValidateToolRequest(tool_id=tool.id), metadata=me.metadata()).valid
    run = _execute(stub, me, tool, {"a": 2, "b": 40})
    assert run.status == pb.TOOL_EXECUTION_STATUS_COMPLETED, run.error
    assert _output(run) == {"result": 42}

    missing = _create(stub, me, type="TOOL_TYPE_MCP",
                      mcp={"server_url": mcp_server.url, "tool_name": "nope"})
    result = stub.ValidateTool(pb.ValidateToolRequest(tool_id=missing.id), metadata=me.metadata())
    assert not result.valid and result.errors[0].field == "mcp.tool_name"
    assert "add" in result.errors[0].message and "shout" in result.errors[0].message

    failing = _create(stub, me, type="TOOL_TYPE_MCP",
                      mcp={"server_url": mcp_server.url, "tool_name": "fail"})
    run = _execute(stub, me, failing, {"reason": "broken on purpose"})
    assert run.status == pb.TOOL_EXECUTION_STATUS_FAILED and "broken on purpose" in run.error


def test_mcp_server_on_loopback_is_refused_without_allow_list(strict, me, mcp_server):
    tool = _create(strict, me, type="TOOL_TYPE_MCP",
                   mcp={"server_url": mcp_server.url, "tool_name": "add"})
    error = _fails(lambda: _execute(strict, me, tool, {"a": 1, "b": 2}),
                   grpc.StatusCode.PERMISSION_DENIED)
    assert error_reason(error) == "EGRESS_DENIED"


def test_an_execution_with_an_idempotency_key_happens_once(stub, me, tools_service, web):
    """A workflow step's call (or a client's retry) with the same key gets the first execution
    back; the HTTP tool's server saw one request. A claim left by a call whose process died
    (its lease run out) does not block the key: the next call runs."""
    from datetime import timedelta

    import sqlalchemy as sa

    from mesh.runtime import idempotency
    from mesh.runtime.tables import utcnow

    tool = _create(stub, me, type="TOOL_TYPE_HTTP", http={"url": web.url + "/once", "method": "POST"})
    key = uuid.uuid4().hex
    request = pb.ExecuteToolRequest(tool_id=tool.id)
    request.arguments.update({"n": 1})
    seen = len(web.requests)
    metadata = (*me.metadata(), ("idempotency-key", key))
    first = stub.ExecuteTool(request, metadata=metadata)
    again, call = stub.ExecuteTool.with_call(request, metadata=metadata)
    assert again == first and first.status == pb.TOOL_EXECUTION_STATUS_COMPLETED
    assert ("idempotency-replayed", "true") in call.initial_metadata()
    assert len(web.requests) == seen + 1

    database = tools_service.running.runtime.database
    stale = uuid.uuid4().hex
    with database.session(write=True) as session, session.begin():  # a claim of a dead process
        session.execute(idempotency.TABLE.insert().values(
            tenant_id=me.tenant_id, caller=idempotency.caller_of(dict(me.metadata())),
            method="/agentmesh.tools.v1.ToolService/ExecuteTool",
            key=stale, request_hash="0" * 64, response=None, created_at=utcnow(),
            expires_at=utcnow() - timedelta(seconds=1)))
    taken_over = stub.ExecuteTool(request, metadata=(*me.metadata(), ("idempotency-key", stale)))
    assert taken_over.status == pb.TOOL_EXECUTION_STATUS_COMPLETED
    assert taken_over.id != first.id and len(web.requests) == seen + 2
    with database.session() as session:
        stored = session.execute(sa.select(idempotency.TABLE.c.response).where(
            idempotency.TABLE.c.key == stale)).scalar_one()
    assert stored is not None


@pytest.mark.parametrize("name", ["123e4567-e89b-12d3-a456-426614174000", "categories", "types",
                                  "no spaces", "-leading", "x" * 101, ""])
def test_a_name_that_is_an_id_a_route_or_outside_the_pattern_is_refused(stub, me, name):
    """Create and rename alike (a renamed tool's name is checked as a new one's)."""
    error = _fails(lambda: _create(stub, me, name=name, type="TOOL_TYPE_BUILTIN",
                                   builtin={"builtin_name": "echo"}),
                   grpc.StatusCode.INVALID_ARGUMENT)
    assert field_violations(error) == ["name"]
    if not name:
        return  # an update that masks a REQUIRED field with "" keeps it (docs/contract.md)
    tool = _create(stub, me, type="TOOL_TYPE_BUILTIN", builtin={"builtin_name": "echo"})
    error = _fails(lambda: stub.UpdateTool(pb.UpdateToolRequest(
        tool_id=tool.id, tool=pb.Tool(name=name), update_mask={"paths": ["name"]}),
        metadata=me.metadata()), grpc.StatusCode.INVALID_ARGUMENT)
    assert field_violations(error) == ["name"]
