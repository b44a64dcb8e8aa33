"""The templates service in-process (on SQLite and on PostgreSQL), with the real agents service
(and the not-yet-built workflows service) as its peers: rendering, validation, versions,
export/import, instantiate."""

from __future__ import annotations

import json
import uuid

import grpc
import pytest
import yaml
from google.protobuf import json_format, struct_pb2

from agentmesh.agents.v1 import agents_pb2, agents_pb2_grpc
from agentmesh.templates.v1 import templates_pb2 as pb
from agentmesh.templates.v1 import templates_pb2_grpc as pb_grpc
from mesh.agents.service import DEFINITION as AGENTS
from mesh.runtime.service import ServiceDefinition
from mesh.templates.service import DEFINITION
from tests.harness import Identity, ServiceHarness, field_violations
from tests.harness import rpc_error as _raises


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def services(request, tmp_path_factory):
    settings = {}
    if request.param == "postgres":
        from mesh.runtime.db import Database
        from mesh.runtime.settings import Settings

        settings["database_url"] = request.getfixturevalue("postgres_url")
        Database.for_service("templates", Settings(**settings)).drop_schema()  # a fresh schema
    with ServiceHarness(AGENTS, tmp_path_factory.mktemp("agents")) as agents, \
            ServiceHarness(ServiceDefinition.placeholder_for("workflows"),
                           tmp_path_factory.mktemp("workflows")) as workflows:
        peers = (f"agents=127.0.0.1:{agents.running.port},"
                 f"workflows=127.0.0.1:{workflows.running.port}")
        with ServiceHarness(DEFINITION, tmp_path_factory.mktemp("templates"), peers=peers,
                            **settings) as templates:
            yield templates, agents


@pytest.fixture
def stub(services):
    return services[0].stub(pb_grpc.TemplateServiceStub)


def _name(prefix="tpl"):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _template(name, content, parameters, kind=pb.TEMPLATE_KIND_AGENT):
    t = pb.Template(name=name, kind=kind, parameters=[
        json_format.ParseDict(p, pb.TemplateParameter()) for p in parameters])
    t.content.update(content)
    return t


AGENT_CONTENT = {"name": "{{ agent_name }}", "model": "{{ model }}",
                 "system_prompt": "You help {{ team | upper }} with {{ topic }}.",
                 "config": {"max_steps": "{{ steps }}"}}
AGENT_PARAMS = [{"name": "agent_name", "required": True},
                {"name": "model", "default_value": "gpt-4o"},
                {"name": "team", "required": True},
                {"name": "topic", "default_value": "billing"},
                {"name": "steps", "type": "integer", "default_value": 5}]


def test_preview_renders_types_and_keeps_missing_placeholders(stub, me):
    t = stub.CreateTemplate(pb.CreateTemplateRequest(template=_template(
        _name(), AGENT_CONTENT, AGENT_PARAMS)), metadata=me.metadata())
    assert t.version == 1 and t.parameters[4].default_value.number_value == 5
    preview = stub.PreviewTemplate(pb.PreviewTemplateRequest(
        template_id=t.id, parameters=json.dumps({"team": "ops", "steps": 7})),
        metadata=me.metadata())
    result = json_format.MessageToDict(preview.result)
    assert result["system_prompt"] == "You help OPS with billing."
    assert result["config"]["max_steps"] == 7 and result["name"] == "{{ agent_name }}"
    assert list(preview.missing_parameters) == ["agent_name"]
    error = _raises(lambda: stub.PreviewTemplate(pb.PreviewTemplateRequest(
        template_id=t.id, parameters=json.dumps({"steps": "many"})), metadata=me.metadata()),
        grpc.StatusCode.INVALID_ARGUMENT, "TEMPLATE_PARAMETER_TYPE")
    assert field_violations(error) == ["parameters.steps"]
    _raises(lambda: stub.PreviewTemplate(pb.PreviewTemplateRequest(
        template_id=t.id, parameters="[1]"), metadata=me.metadata()),
        grpc.StatusCode.INVALID_ARGUMENT)
    _raises(lambda: stub.GetTemplate(pb.GetTemplateRequest(template_id=t.id),
                                     metadata=Identity().metadata()),
            grpc.StatusCode.NOT_FOUND, "TEMPLATE_NOT_FOUND")


@pytest.mark.parametrize("content, parameters, field", [
    ({"name": "{{ ''.__class__ }}"}, [], "content.name"),
    ({"name": "{{ x.__init__.__globals__ }}"}, [{"name": "x"}], "content.name"),
    ({"a": ["{% for i in range(9) %}x{% endfor %}"]}, [], "content.a[0]"),
    ({"name": "{{ undeclared }}"}, [], "content.name"),
    ({"name": "{{ n }}"}, [{"name": "n", "type": "integer", "default_value": "five"}],
     "parameters[0].default_value"),
    ({"name": "{{ n }}"}, [{"name": "n", "type": "text"}], "parameters[0].type"),
    ({"name": "{{ n }}"}, [{"name": "n"}, {"name": "n"}], "parameters[1].name"),
])
def test_bad_templates_are_refused_with_the_field(stub, me, content, parameters, field):
    name = _name()
    error = _raises(lambda: stub.CreateTemplate(pb.CreateTemplateRequest(
        template=_template(name, content, parameters)), metadata=me.metadata()),
        grpc.StatusCode.INVALID_ARGUMENT)
    assert field_violations(error) == [field]
    _raises(lambda: stub.GetTemplate(pb.GetTemplateRequest(template_id=name),
                                     metadata=me.metadata()), grpc.StatusCode.NOT_FOUND)


def test_instantiate_creates_the_agent_as_the_caller(services, stub, me):
    _, agents = services
    t = stub.CreateTemplate(pb.CreateTemplateRequest(template=_template(
        _name(), AGENT_CONTENT, AGENT_PARAMS)), metadata=me.metadata())
    params = struct_pb2.Struct()
    params.update({"agent_name": "support-bot", "team": "ops"})
    made = stub.InstantiateTemplate(pb.InstantiateTemplateRequest(
        template_id=t.name, parameters=params, create=True), metadata=me.metadata())
    agent = agents.stub(agents_pb2_grpc.AgentServiceStub).GetAgent(
        agents_pb2.GetAgentRequest(agent_id="support-bot"), metadata=me.metadata())
    assert agent.id == made.resource_id and agent.tenant_id == me.tenant_id
    assert agent.created_by == me.user_id and agent.system_prompt == "You help OPS with billing."
    # the agents service's own error passes through
    _raises(lambda: stub.InstantiateTemplate(pb.InstantiateTemplateRequest(
        template_id=t.name, parameters=params, create=True), metadata=me.metadata()),
        grpc.StatusCode.ALREADY_EXISTS, "AGENT_ALREADY_EXISTS")
    error = _raises(lambda: stub.InstantiateTemplate(pb.InstantiateTemplateRequest(
        template_id=t.name, create=True), metadata=me.metadata()),
        grpc.StatusCode.INVALID_ARGUMENT, "TEMPLATE_PARAMETERS_MISSING")
    assert field_violations(error) == ["parameters.agent_name", "parameters.team"]
    reader = Identity(tenant_id=me.tenant_id, scopes="templates:execute")
    _raises(lambda: stub.InstantiateTemplate(pb.InstantiateTemplateRequest(
        template_id=t.name, parameters=params, create=True), metadata=reader.metadata()),
        grpc.StatusCode.PERMISSION_DENIED, "MISSING_SCOPE")


def test_workflow_kind_answers_unimplemented_until_the_service_exists(stub, me):
    t = stub.CreateTemplate(pb.CreateTemplateRequest(template=_template(
        _name(), {"name": "{{ n }}"}, [{"name": "n", "default_value": "flow"}],
        kind=pb.TEMPLATE_KIND_WORKFLOW)), metadata=me.metadata())
    rendered = stub.InstantiateTemplate(pb.InstantiateTemplateRequest(template_id=t.id),
                                        metadata=me.metadata())
    assert rendered.result["name"] == "flow" and not rendered.resource_id
    _raises(lambda: stub.InstantiateTemplate(pb.InstantiateTemplateRequest(
        template_id=t.id, create=True), metadata=me.metadata()),
        grpc.StatusCode.UNIMPLEMENTED, "TARGET_SERVICE_NOT_BUILT")


def test_versions_export_and_import_round_trip(stub, me):
    name = _name()
    t = stub.CreateTemplate(pb.CreateTemplateRequest(template=_template(
        name, AGENT_CONTENT, AGENT_PARAMS)), metadata=me.metadata())
    changed = dict(AGENT_CONTENT, description="v2 {{ topic }}")
    body = pb.TemplateVersion(changelog="describe")
    body.content.update(changed)
    v2 = stub.CreateTemplateVersion(pb.CreateTemplateVersionRequest(
        template_id=t.id, template_version=body), metadata=me.metadata())
    assert v2.version == 2 and len(v2.parameters) == len(AGENT_PARAMS)
    listed = stub.ListTemplateVersions(pb.ListTemplateVersionsRequest(template_id=t.id),
                                       metadata=me.metadata())
    assert [v.version for v in listed.items] == [2, 1]
    exported = stub.ExportTemplate(pb.ExportTemplateRequest(
        template_id=t.id, format=pb.TEMPLATE_FORMAT_YAML), metadata=me.metadata())
    assert exported.content_type == "application/yaml"
    document = yaml.safe_load(exported.data)
    assert document["version"] == 2 and document["content"] == changed
    copy = stub.ImportTemplate(pb.ImportTemplateRequest(
        content=exported.data.decode(), name=name + "-copy"), metadata=me.metadata())
    assert copy.version == 1 and copy.id != t.id
    again = stub.ExportTemplate(pb.ExportTemplateRequest(
        template_id=copy.id, format=pb.TEMPLATE_FORMAT_YAML), metadata=me.metadata())
    assert {**yaml.safe_load(again.data), "name": name, "version": 2} == document
    as_json = stub.ExportTemplate(pb.ExportTemplateRequest(template_id=copy.id),
                                  metadata=me.metadata())
    assert as_json.content_type == "application/json"
    assert json.loads(as_json.data)["content"] == changed
    broken = dict(document, name=_name(), parameters=[{"name": "x", "type": "bogus"}])
    error = _raises(lambda: stub.ImportTemplate(pb.ImportTemplateRequest(
        content=yaml.safe_dump(broken)), metadata=me.metadata()),
        grpc.StatusCode.INVALID_ARGUMENT)
    assert field_violations(error) == ["parameters[0].type"]
    error = _raises(lambda: stub.ImportTemplate(pb.ImportTemplateRequest(
        content="name: [unclosed"), metadata=me.metadata()), grpc.StatusCode.INVALID_ARGUMENT)
    assert field_violations(error) == ["content"]
    _raises(lambda: stub.ImportTemplate(pb.ImportTemplateRequest(
        content=exported.data.decode()), metadata=me.metadata()),
        grpc.StatusCode.ALREADY_EXISTS, "TEMPLATE_ALREADY_EXISTS")


def test_import_refuses_yaml_aliases_and_keeps_dates_as_text(stub, me):
    bomb = "name: bomb\nkind: agent\ncontent:\n  a: &x [1, 2]\n  b: *x\n"
    error = _raises(lambda: stub.ImportTemplate(pb.ImportTemplateRequest(content=bomb),
                                                metadata=me.metadata()),
                    grpc.StatusCode.INVALID_ARGUMENT)
    assert field_violations(error) == ["content"]
    made = stub.ImportTemplate(pb.ImportTemplateRequest(
        content=f"name: {_name()}\nkind: agent\ncontent:\n  name: x\n  since: 2024-01-01\n"),
        metadata=me.metadata())
    assert made.content["since"] == "2024-01-01" and made.kind == pb.TEMPLATE_KIND_AGENT
    error = _raises(lambda: stub.ImportTemplate(pb.ImportTemplateRequest(
        content=f"name: {_name()}\nkind: agent\ncontent: {{x: !!binary aGk=}}\n"),
        metadata=me.metadata()), grpc.StatusCode.INVALID_ARGUMENT)
    assert field_violations(error) == ["content"]


def test_labels_point_at_versions_for_preview_instantiate_and_export(stub, me):
    t = stub.CreateTemplate(pb.CreateTemplateRequest(template=_template(
        _name(), {"name": "v1 {{ n }}"}, [{"name": "n", "default_value": "x"}])),
        metadata=me.metadata())
    body = pb.TemplateVersion()
    body.content.update({"name": "v2 {{ n }}"})
    stub.CreateTemplateVersion(pb.CreateTemplateVersionRequest(template_id=t.id,
                                                               template_version=body),
                               metadata=me.metadata())
    labelled = stub.SetTemplateLabel(pb.SetTemplateLabelRequest(
        template_id=t.id, label="production", version=1), metadata=me.metadata())
    assert dict(labelled.labels) == {"production": 1} and labelled.version == 2
    preview = stub.PreviewTemplate(pb.PreviewTemplateRequest(template_id=t.id,
                                                             label="production"),
                                   metadata=me.metadata())
    assert (preview.version, preview.result["name"]) == (1, "v1 x")
    current = stub.InstantiateTemplate(pb.InstantiateTemplateRequest(template_id=t.id),
                                       metadata=me.metadata())
    assert current.result["name"] == "v2 x"
    exported = stub.ExportTemplate(pb.ExportTemplateRequest(template_id=t.id, label="production"),
                                   metadata=me.metadata())
    assert json.loads(exported.data)["version"] == 1
    listed = stub.ListTemplateVersions(pb.ListTemplateVersionsRequest(template_id=t.id),
                                       metadata=me.metadata())
    assert [list(v.labels) for v in listed.items] == [["latest"], ["production"]]
    _raises(lambda: stub.PreviewTemplate(pb.PreviewTemplateRequest(template_id=t.id,
                                                                   label="staging"),
                                         metadata=me.metadata()),
            grpc.StatusCode.NOT_FOUND, "TEMPLATE_LABEL_NOT_FOUND")
    _raises(lambda: stub.SetTemplateLabel(pb.SetTemplateLabelRequest(
        template_id=t.id, label="production", version=9), metadata=me.metadata()),
        grpc.StatusCode.NOT_FOUND, "TEMPLATE_VERSION_NOT_FOUND")
    stub.DeleteTemplateLabel(pb.DeleteTemplateLabelRequest(template_id=t.id, label="production"),
                             metadata=me.metadata())
    assert dict(stub.GetTemplate(pb.GetTemplateRequest(template_id=t.id),
                                 metadata=me.metadata()).labels) == {}
