"""Field bounds: declared once in the protos, enforced by `mesh.runtime.limits`, published in
the OpenAPI document."""

from __future__ import annotations

import json

import pytest
from google.api import field_behavior_pb2

from agentmesh.agents.v1 import agents_pb2
from agentmesh.identity.v1 import identity_pb2
from mesh.build.repo import OPENAPI_JSON
from mesh.runtime import convert, limits
from mesh.runtime.errors import InvalidArgument


def _violation(message) -> tuple[str, str]:
    with pytest.raises(InvalidArgument) as caught:
        limits.check(message)
    assert caught.value.code.name == "INVALID_ARGUMENT"
    (violation,) = caught.value.field_violations
    return violation


def test_a_message_within_its_bounds_passes():
    limits.check(agents_pb2.Agent(name="a" * 100, description="d" * 2000, tools=["t"] * 100,
                                  labels={"k" * 200: "v" * 200}))
    limits.check(identity_pb2.RegisterRequest(tenant_name="acme", email="a@b.c", password="x" * 8))


@pytest.mark.parametrize("agent, field", [
    (agents_pb2.Agent(name="ok", description="d" * 900_000), "description"),
    (agents_pb2.Agent(name="n" * 101), "name"),
    (agents_pb2.Agent(name="ok", system_prompt="p" * 32_001), "system_prompt"),
    (agents_pb2.Agent(name="ok", tools=["t"] * 101), "tools"),
    (agents_pb2.Agent(name="ok", skills=["ok", "s" * 201]), "skills[1]"),
    (agents_pb2.Agent(name="ok", labels={str(i): "" for i in range(51)}), "labels"),
    (agents_pb2.Agent(name="ok", labels={"k" * 201: "v"}), "labels"),
    (agents_pb2.Agent(name="ok", labels={"team": "v" * 201}), "labels.team"),
])
def test_a_field_past_its_bound_is_named(agent, field):
    name, problem = _violation(agent)
    assert name == field
    assert "at most" in problem or "keys of at most" in problem


def test_nested_contract_messages_are_checked():
    request = agents_pb2.CreateAgentRequest(agent=agents_pb2.Agent(name="x", model="m" * 201))
    assert _violation(request)[0] == "agent.model"
    register = identity_pb2.RegisterRequest(tenant_name="t", email="e" * 255, password="p")
    assert _violation(register)[0] == "email"


def test_the_openapi_document_states_the_bounds():
    schemas = json.loads(OPENAPI_JSON.read_text())["components"]["schemas"]
    agent = schemas["agentmesh.agents.v1.Agent"]["properties"]
    assert agent["description"]["maxLength"] == 2000
    assert agent["name"]["maxLength"] == 100
    listed = agent["tools"]
    assert listed["type"] == ["array", "null"]  # optional: a list, or null (not set)
    assert listed["maxItems"] == 100
    assert listed["items"]["maxLength"] == 200
    assert agent["labels"]["maxProperties"] == 50
    assert agent["labels"]["additionalProperties"]["maxLength"] == 200
    assert agent["name"]["pattern"].startswith("^")
    document = json.loads(OPENAPI_JSON.read_text())
    register = document["paths"]["/api/v1/auth/register"]["post"]["requestBody"]["content"]
    assert register["application/json"]["schema"]["properties"]["password"]["maxLength"] == 128


def test_every_free_text_field_of_a_built_write_is_bounded():
    """Strings a user writes into agents and identity have a bound (ids and enums aside)."""
    unbounded = []
    for message in (agents_pb2.Agent, identity_pb2.User, identity_pb2.ApiKey,
                    identity_pb2.RegisterRequest, identity_pb2.LoginRequest):
        for field in message.DESCRIPTOR.fields:
            behaviors = field.GetOptions().Extensions[field_behavior_pb2.field_behavior]
            output_only = field_behavior_pb2.OUTPUT_ONLY in behaviors
            if field.type != field.TYPE_STRING or output_only:
                continue
            if not field.GetOptions().Extensions[limits.annotations_pb2.limits].max_length:
                unbounded.append(f"{message.DESCRIPTOR.name}.{field.name}")
    assert not unbounded, unbounded


# ---- ranges, empty list items, REST body naming (found by Schemathesis) ----------------------
def test_a_refused_value_is_named_by_its_exact_field_path():
    from agentmesh.masterdata.v1 import masterdata_pb2 as md

    with pytest.raises(InvalidArgument) as caught:
        limits.check(md.SetPromptLabelRequest(prompt_id="p", label="production", version=-1))
    assert [v[0] for v in caught.value.field_violations] == ["version"]
    # zero is proto3's "not sent": REQUIRED is the service's rule, not a bound
    limits.check(md.SetPromptLabelRequest(prompt_id="p", label="production"))
    # an empty item of a list is an item, not a field left out
    with pytest.raises(InvalidArgument) as caught:
        limits.check(md.CreateSkillRequest(skill=md.Skill(name="s", tags=["a", ""])), "skill")
    assert [v[0] for v in caught.value.field_violations] == ["tags[1]"]
    # without the body name, the path is the request's
    with pytest.raises(InvalidArgument) as caught:
        limits.check(md.CreateSkillRequest(skill=md.Skill(name="s", tags=[""])))
    assert [v[0] for v in caught.value.field_violations] == ["skill.tags[0]"]


def test_the_document_states_what_the_generator_derives():
    document = json.loads(OPENAPI_JSON.read_text())
    schemas = document["components"]["schemas"]
    # a path parameter of an int32 field is an integer in the int32 range
    params = document["paths"]["/api/v1/master-data/prompts/{prompt_id}/versions/{version}"][
        "get"]["parameters"]
    version = next(p for p in params if p["name"] == "version")["schema"]
    assert version["type"] == "integer" and version["maximum"] == 2**31 - 1
    # a required query parameter is required
    search = document["paths"]["/api/v1/master-data/skills/search"]["get"]["parameters"]
    assert next(p for p in search if p["name"] == "q")["required"] is True
    # a required enum excludes its zero value
    kind = schemas["agentmesh.templates.v1.Template"]["properties"]["kind"]
    assert kind["not"] == {"enum": ["TEMPLATE_KIND_UNSPECIFIED"]}
    assert kind["allOf"] == [{"$ref": "#/components/schemas/agentmesh.templates.v1.TemplateKind"}]
    # an enum is its value names (a body's number is refused by the gateway); a query
    # parameter, which the gateway's body check does not see, also takes the number
    assert schemas["agentmesh.templates.v1.TemplateKind"]["type"] == "string"
    listing = document["paths"]["/api/v1/templates"]["get"]["parameters"]
    assert next(p for p in listing if p["name"] == "kind")["schema"]["anyOf"][1] == {
        "type": "integer", "enum": [0, 1, 2, 3]}
    # members of a oneof are exclusive
    assert any(set(p["required"]) == {"http", "mcp"}
               for p in schemas["agentmesh.tools.v1.Tool"]["not"]["anyOf"])
    # an INPUT_ONLY string without presence is printed empty in answers: not writeOnly, and
    # the create body asks for a value
    value = schemas["agentmesh.masterdata.v1.Secret"]["properties"]["value"]
    assert "writeOnly" not in value
    create = document["paths"]["/api/v1/master-data/secrets"]["post"]["requestBody"]
    assert create["content"]["application/json"]["schema"]["allOf"][1]["properties"] == {
        "value": {"minLength": 1}}


def test_no_schema_refers_to_itself_and_lists_are_arrays():
    """What client generators need (openapi-typescript's types fail `tsc --strict` with TS2502
    on a schema that refers to itself; openapi-python-client drops enums of names and numbers):
    tests/e2e/test_openapi_generators.py runs both."""
    schemas = json.loads(OPENAPI_JSON.read_text())["components"]["schemas"]

    def refs(value):
        if isinstance(value, dict):
            if "$ref" in value:
                yield value["$ref"].rsplit("/", 1)[1]
            for inner in value.values():
                yield from refs(inner)
        elif isinstance(value, list):
            for inner in value:
                yield from refs(inner)

    assert [name for name, schema in schemas.items() if name in set(refs(schema))] == []
    assert not [name for name in schemas if name.endswith(".Item")]
    for name, schema in schemas.items():
        if "enum" in schema:
            assert schema["type"] == "string" and all(isinstance(v, str) for v in schema["enum"])


# ---- a body holds the document's shape whatever the update mask (found by Schemathesis) ------
def test_given_nested_messages_need_their_required_fields_and_timestamps_a_date():
    from google.protobuf import field_mask_pb2, timestamp_pb2

    from agentmesh.masterdata.v1 import masterdata_pb2 as md
    from agentmesh.templates.v1 import templates_pb2 as tp

    mask = field_mask_pb2.FieldMask(paths=["name", "description"])
    # a prompt variable without its REQUIRED name, even outside the mask
    update = md.UpdatePromptRequest(prompt_id="p", update_mask=mask,
                                    prompt=md.Prompt(variables=[md.PromptVariable()]))
    with pytest.raises(InvalidArgument) as caught:
        limits.check(update, "prompt")
    assert [v[0] for v in caught.value.field_violations] == ["variables[0].name"]
    # and the same rule on create, named from the request without a body name
    create = md.CreatePromptRequest(prompt=md.Prompt(name="p", content="c", variables=[
        md.PromptVariable(name="a"), md.PromptVariable(description="no name")]))
    with pytest.raises(InvalidArgument) as caught:
        limits.check(create, "*")
    assert [v[0] for v in caught.value.field_violations] == ["prompt.variables[1].name"]
    with pytest.raises(InvalidArgument) as caught:
        limits.check(tp.UpdateTemplateRequest(template_id="t", update_mask=mask, template=tp.Template(
            parameters=[tp.TemplateParameter(type="string")])), "template")
    assert [v[0] for v in caught.value.field_violations] == ["parameters[0].name"]
    # the top of a partial body needs nothing; a nested message left out is not checked
    limits.check(md.UpdatePromptRequest(prompt_id="p", update_mask=mask, prompt=md.Prompt()),
                 "prompt")
    # a Timestamp given as an object reaches the service as an empty one (the epoch): refused
    secret = md.Secret()
    secret.expires_at.SetInParent()
    with pytest.raises(InvalidArgument) as caught:
        limits.check(md.UpdateSecretRequest(secret_id="s", update_mask=mask, secret=secret),
                     "secret")
    assert [v[0] for v in caught.value.field_violations] == ["expires_at"]
    limits.check(md.UpdateSecretRequest(secret_id="s", update_mask=mask, secret=md.Secret(
        expires_at=timestamp_pb2.Timestamp(seconds=1_900_000_000))), "secret")
    # at the top of a partial body a REQUIRED object may be empty ("not sent", kept)
    template = tp.Template()
    template.content.SetInParent()
    limits.check(tp.UpdateTemplateRequest(template_id="t", update_mask=mask, template=template),
                 "template")
    assert convert.changes(template, {"content", "name"}, ["content"]) == {}
    # outside a REST body (gRPC-only fields, query parameters) nothing changes
    limits.check(md.UpdateSecretRequest(secret_id="s", secret=secret))


def test_the_document_states_default_types_and_the_yaml_export():
    from jsonschema import Draft202012Validator

    document = json.loads(OPENAPI_JSON.read_text())
    schemas = document["components"]["schemas"]
    parameter = Draft202012Validator(schemas["agentmesh.templates.v1.TemplateParameter"])
    assert parameter.is_valid({"name": "a", "default_value": "x"})
    assert not parameter.is_valid({"name": "a", "type": "", "default_value": {}})
    assert not parameter.is_valid({"name": "a", "default_value": 1})  # no type: a string
    assert parameter.is_valid({"name": "a", "type": "integer", "default_value": 3})
    assert not parameter.is_valid({"name": "a", "type": "boolean", "default_value": "yes"})
    assert parameter.is_valid({"name": "a", "type": "object", "default_value": None})
    # a YAML export is the JSON document in another syntax
    export = document["paths"]["/api/v1/integration/export"]["post"]["responses"]["200"]
    assert export["content"]["application/yaml"] == export["content"]["application/json"]


# ---- enums hold numbers their enum defines ----------------------------------------------------
def _probe_messages():
    """A message of the contract's package with every shape an enum can take: a singular,
    repeated and map-valued enum, and the same below a nested message, a list and a map."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name="agentmesh/probe/v1/probe.proto",
                                              package="agentmesh.probe.v1", syntax="proto3")
    file.enum_type.add(name="Colour").value.extend([
        descriptor_pb2.EnumValueDescriptorProto(name="COLOUR_UNSPECIFIED", number=0),
        descriptor_pb2.EnumValueDescriptorProto(name="COLOUR_RED", number=1)])
    colour = ".agentmesh.probe.v1.Colour"
    leaf = file.message_type.add(name="Leaf")
    leaf.field.add(name="colour", number=1, type=F.TYPE_ENUM, type_name=colour,
                   label=F.LABEL_OPTIONAL)
    leaf.field.add(name="colours", number=2, type=F.TYPE_ENUM, type_name=colour,
                   label=F.LABEL_REPEATED)
    entry = leaf.nested_type.add(name="ByNameEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=F.TYPE_ENUM, type_name=colour,
                    label=F.LABEL_OPTIONAL)
    leaf.field.add(name="by_name", number=3, type=F.TYPE_MESSAGE, label=F.LABEL_REPEATED,
                   type_name=".agentmesh.probe.v1.Leaf.ByNameEntry")
    root = file.message_type.add(name="Root")
    root.field.add(name="leaf", number=1, type=F.TYPE_MESSAGE, label=F.LABEL_OPTIONAL,
                   type_name=".agentmesh.probe.v1.Leaf")
    root.field.add(name="leaves", number=2, type=F.TYPE_MESSAGE, label=F.LABEL_REPEATED,
                   type_name=".agentmesh.probe.v1.Leaf")
    entry = root.nested_type.add(name="LeafByNameEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=F.TYPE_MESSAGE, label=F.LABEL_OPTIONAL,
                    type_name=".agentmesh.probe.v1.Leaf")
    root.field.add(name="leaf_by_name", number=3, type=F.TYPE_MESSAGE, label=F.LABEL_REPEATED,
                   type_name=".agentmesh.probe.v1.Root.LeafByNameEntry")
    root.field.add(name="name", number=4, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("agentmesh.probe.v1.Root"))


def test_an_undefined_enum_number_is_refused_wherever_the_enum_sits():
    Root = _probe_messages()

    def refused(root, body="") -> str:
        with pytest.raises(InvalidArgument) as caught:
            limits.check(root, body)
        (violation,) = caught.value.field_violations
        assert "COLOUR_RED" in violation[1]  # the answer says what would do
        return violation[0]

    fine = Root(name="n")
    fine.leaf.colour = 1
    fine.leaves.add().colours.extend([0, 1])
    fine.leaf_by_name["a"].by_name["b"] = 1
    limits.check(fine)
    limits.check(Root())  # no enums given: nothing to check

    root = Root()
    root.leaf.colour = 7
    assert refused(root) == "leaf.colour"
    assert refused(root, "leaf") == "colour"  # named as a REST client wrote the body
    assert refused(root, "*") == "leaf.colour"
    root = Root()
    root.leaves.add()
    root.leaves.add().colours.extend([1, -3])
    assert refused(root) == "leaves[1].colours[1]"
    root = Root()
    root.leaf_by_name["x"].by_name["y"] = 42
    assert refused(root) == "leaf_by_name.x.by_name.y"


def test_an_undefined_enum_number_of_a_request_is_refused_before_its_handler():
    from agentmesh.workflows.v1 import workflows_pb2 as wf

    with pytest.raises(InvalidArgument) as caught:
        limits.check(wf.ExecuteWorkflowRequest(workflow_id="w", priority=-1629), "*")
    assert [v[0] for v in caught.value.field_violations] == ["priority"]
    workflow = wf.Workflow(name="w", slug="w")
    workflow.steps.add(id="a", type=99)
    with pytest.raises(InvalidArgument) as caught:
        limits.check(wf.CreateWorkflowRequest(workflow=workflow), "workflow")
    assert [v[0] for v in caught.value.field_violations] == ["steps[0].type"]
