"""The masterdata service alone, in-process: domain rules asserted by gRPC code and reason, on
SQLite and on PostgreSQL."""

from __future__ import annotations

import base64
import os
import uuid

import grpc
import pytest
from google.protobuf import struct_pb2

from agentmesh.masterdata.v1 import masterdata_pb2 as pb
from agentmesh.masterdata.v1 import masterdata_pb2_grpc as pb_grpc
from mesh.masterdata.service import DEFINITION
from tests.harness import Identity, ServiceHarness, field_violations
from tests.harness import rpc_error as _raises


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def service(request, tmp_path_factory):
    settings = {}
    if request.param == "postgres":
        from mesh.runtime.db import Database
        from mesh.runtime.settings import Settings

        # A fresh schema: secrets left by an earlier run were sealed with that run's key file.
        settings["database_url"] = request.getfixturevalue("postgres_url")
        Database.for_service("masterdata", Settings(**settings)).drop_schema()
    with ServiceHarness(DEFINITION, tmp_path_factory.mktemp("masterdata"), **settings) as harness:
        yield harness


def _name(prefix="x"):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _struct(value: dict) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(value)
    return s


def test_skill_crud_search_categories_and_isolation(service, me):
    stub = service.stub(pb_grpc.SkillServiceStub)
    md = me.metadata()
    name = _name("summarize")
    skill = stub.CreateSkill(pb.CreateSkillRequest(skill=pb.Skill(
        name=name, category="language", tags=["nlp"], description="condense text",
        parameters=_struct({"type": "object", "properties": {"text": {"type": "string"}}}))),
        metadata=md)
    stub.CreateSkill(pb.CreateSkillRequest(skill=pb.Skill(name=_name("other"), category="data",
                                                          description="mentions summarize")),
                     metadata=md)
    assert stub.GetSkill(pb.GetSkillRequest(skill_id=name), metadata=md).id == skill.id
    found = stub.SearchSkills(pb.SearchSkillsRequest(q="summarize"), metadata=md)
    assert found.total == 2 and found.items[0].name == name  # name match ranks first
    cats = stub.ListSkillCategories(pb.ListSkillCategoriesRequest(), metadata=md)
    assert [(c.name, c.count) for c in cats.items] == [("data", 1), ("language", 1)]
    tagged = stub.ListSkills(pb.ListSkillsRequest(tag="nlp"), metadata=md)
    assert [s.name for s in tagged.items] == [name]
    _raises(lambda: stub.GetSkill(pb.GetSkillRequest(skill_id=skill.id),
                                  metadata=Identity().metadata()),
            grpc.StatusCode.NOT_FOUND, "SKILL_NOT_FOUND")
    error = _raises(lambda: stub.CreateSkill(pb.CreateSkillRequest(skill=pb.Skill(
        name="search")), metadata=md), grpc.StatusCode.INVALID_ARGUMENT)
    assert field_violations(error) == ["name"]
    error = _raises(lambda: stub.CreateSkill(pb.CreateSkillRequest(skill=pb.Skill(
        name=_name(), parameters=_struct({"type": "no-such-type"}))), metadata=md),
        grpc.StatusCode.INVALID_ARGUMENT)
    assert field_violations(error) == ["parameters.type"]
    _raises(lambda: stub.CreateSkill(pb.CreateSkillRequest(skill=pb.Skill(name=name)),
                                     metadata=md), grpc.StatusCode.ALREADY_EXISTS,
            "SKILL_ALREADY_EXISTS")


def test_constraint_rules_are_checked_against_the_type(service, me):
    stub = service.stub(pb_grpc.ConstraintServiceStub)
    md = me.metadata()
    ok = stub.CreateConstraint(pb.CreateConstraintRequest(constraint=pb.Constraint(
        name=_name("tokens"), constraint_type=pb.CONSTRAINT_TYPE_MAX_TOKENS_PER_CALL,
        rules=_struct({"max_tokens": 4000}))), metadata=md)
    assert ok.enabled and ok.enforcement == pb.CONSTRAINT_ENFORCEMENT_BLOCK
    error = _raises(lambda: stub.CreateConstraint(pb.CreateConstraintRequest(
        constraint=pb.Constraint(name=_name(), constraint_type=pb.CONSTRAINT_TYPE_MAX_TOKENS_PER_CALL,
                                 rules=_struct({"max_tokens": -1, "extra": 1}))), metadata=md),
        grpc.StatusCode.INVALID_ARGUMENT, "INVALID_CONSTRAINT_RULES")
    assert set(field_violations(error)) == {"rules", "rules.max_tokens"}
    _raises(lambda: stub.CreateConstraint(pb.CreateConstraintRequest(constraint=pb.Constraint(
        name=_name())), metadata=md), grpc.StatusCode.INVALID_ARGUMENT)
    _raises(lambda: stub.UpdateConstraint(pb.UpdateConstraintRequest(
        constraint_id=ok.id, constraint=pb.Constraint(rules=_struct({"max_steps": 3}))),
        metadata=md), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_CONSTRAINT_RULES")
    disabled = stub.UpdateConstraint(pb.UpdateConstraintRequest(
        constraint_id=ok.id, constraint=pb.Constraint(enabled=False)), metadata=md)
    assert not disabled.enabled
    listed = stub.ListConstraints(pb.ListConstraintsRequest(enabled=False), metadata=md)
    assert [c.id for c in listed.items] == [ok.id]
    types = stub.ListConstraintTypes(pb.ListConstraintTypesRequest(page_size=100), metadata=md)
    by_name = {t.name: t for t in types.items}
    assert by_name["CONSTRAINT_TYPE_MAX_TOKENS_PER_CALL"].count == 1
    assert by_name["CONSTRAINT_TYPE_ALLOWED_TOOLS"].count == 0
    assert "max_tokens" in by_name["CONSTRAINT_TYPE_MAX_TOKENS_PER_CALL"].rules_schema["properties"]
    assert len(types.items) == 13


def test_prompt_versions_labels_and_render(service, me):
    stub = service.stub(pb_grpc.PromptServiceStub)
    md = me.metadata()
    name = _name("greeting")
    prompt = stub.CreatePrompt(pb.CreatePromptRequest(prompt=pb.Prompt(
        name=name, content="Hello {{ user }}")), metadata=md)
    assert prompt.version == 1 and list(prompt.placeholders) == ["user"]
    assert [v.name for v in prompt.variables] == ["user"] and prompt.variables[0].required
    stub.UpdatePrompt(pb.UpdatePromptRequest(prompt_id=name, prompt=pb.Prompt(
        content="Hi {{ user }}")), metadata=md)
    v3 = stub.CreatePromptVersion(pb.CreatePromptVersionRequest(
        prompt_id=name, prompt_version=pb.PromptVersion(
            content="Hey {{ user }} from {{ team }}", changelog="team"),), metadata=md)
    assert v3.version == 3
    labelled = stub.SetPromptLabel(pb.SetPromptLabelRequest(prompt_id=name, label="production",
                                                            version=2), metadata=md)
    assert dict(labelled.labels) == {"production": 2}
    by_label = stub.GetPrompt(pb.GetPromptRequest(prompt_id=name, label="production"),
                              metadata=md)
    assert (by_label.content, by_label.served_version, by_label.version) == ("Hi {{ user }}", 2, 3)
    rendered = stub.RenderPrompt(pb.RenderPromptRequest(prompt_id=name, label="production",
                                                        variables={"user": "Ada"}), metadata=md)
    assert (rendered.content, rendered.version) == ("Hi Ada", 2)
    error = _raises(lambda: stub.RenderPrompt(pb.RenderPromptRequest(
        prompt_id=name, variables={"user": "Ada"}), metadata=md),
        grpc.StatusCode.INVALID_ARGUMENT, "PROMPT_VARIABLES_MISSING")
    assert field_violations(error) == ["variables.team"]
    _raises(lambda: stub.DeletePromptVersion(pb.DeletePromptVersionRequest(prompt_id=name,
                                                                           version=2),
                                             metadata=md),
            grpc.StatusCode.FAILED_PRECONDITION, "PROMPT_VERSION_IMMUTABLE")
    versions = stub.ListPromptVersions(pb.ListPromptVersionsRequest(prompt_id=name), metadata=md)
    assert [v.version for v in versions.items] == [3, 2, 1]
    assert list(versions.items[1].labels) == ["production"]
    stub.SetPromptLabel(pb.SetPromptLabelRequest(prompt_id=name, label="production", version=3),
                        metadata=md)
    # Versions are immutable: with no label on it, version 2 is still never deleted.
    _raises(lambda: stub.DeletePromptVersion(pb.DeletePromptVersionRequest(
        prompt_id=name, version=2), metadata=md),
        grpc.StatusCode.FAILED_PRECONDITION, "PROMPT_VERSION_IMMUTABLE")
    assert stub.GetPromptVersion(pb.GetPromptVersionRequest(prompt_id=name, version=2),
                                 metadata=md).version == 2
    _raises(lambda: stub.DeletePromptVersion(pb.DeletePromptVersionRequest(
        prompt_id=name, version=9), metadata=md),
        grpc.StatusCode.NOT_FOUND, "PROMPT_VERSION_NOT_FOUND")
    error = _raises(lambda: stub.CreatePrompt(pb.CreatePromptRequest(prompt=pb.Prompt(
        name=_name(), content="{{ ''.__class__ }}")), metadata=md),
        grpc.StatusCode.INVALID_ARGUMENT)
    assert field_violations(error) == ["content"]
    error = _raises(lambda: stub.CreatePrompt(pb.CreatePromptRequest(prompt=pb.Prompt(
        name=_name(), content="{{ a }} {{ b }}", variables=[pb.PromptVariable(name="a")])),
        metadata=md), grpc.StatusCode.INVALID_ARGUMENT)
    assert field_violations(error) == ["content"]


def test_models_need_a_known_provider_and_an_existing_secret(service, me):
    models = service.stub(pb_grpc.ModelServiceStub)
    secrets = service.stub(pb_grpc.SecretServiceStub)
    md = me.metadata()
    key = _name("openai-key")
    secrets.CreateSecret(pb.CreateSecretRequest(secret=pb.Secret(
        name=key, value="sk-" + "z" * 40)), metadata=md)
    model = models.CreateModel(pb.CreateModelRequest(model=pb.Model(
        name=_name("gpt"), provider="openai", model_id="gpt-4o", secret_ref=key,
        context_window=128000, pricing=pb.ModelPricing(input_per_1m_tokens=2.5,
                                                       output_per_1m_tokens=10))), metadata=md)
    assert model.status == pb.MODEL_STATUS_ACTIVE and model.pricing.currency == "USD"
    _raises(lambda: models.CreateModel(pb.CreateModelRequest(model=pb.Model(
        name=_name(), provider="skynet", model_id="t-800")), metadata=md),
        grpc.StatusCode.INVALID_ARGUMENT, "UNKNOWN_PROVIDER")
    _raises(lambda: models.CreateModel(pb.CreateModelRequest(model=pb.Model(
        name=_name(), provider="openai", model_id="gpt-4o", secret_ref="nope")), metadata=md),
        grpc.StatusCode.INVALID_ARGUMENT, "SECRET_REF_NOT_FOUND")
    error = _raises(lambda: models.CreateModel(pb.CreateModelRequest(model=pb.Model(
        name=_name(), provider="azure_openai", model_id="dep", secret_ref=key,
        endpoint_url="https://x.openai.azure.com")), metadata=md),
        grpc.StatusCode.INVALID_ARGUMENT)
    assert field_violations(error) == ["default_parameters.api_version"]
    assert models.CreateModel(pb.CreateModelRequest(model=pb.Model(
        name=_name("llama"), provider="ollama", model_id="llama3")), metadata=md).secret_ref == ""
    providers = models.ListModelProviders(pb.ListModelProvidersRequest(), metadata=md)
    by_name = {p.name: p for p in providers.items}
    assert by_name["openai"].count == 1 and by_name["anthropic"].count == 0
    assert by_name["azure_openai"].requirements.endpoint_url_required
    _raises(lambda: secrets.DeleteSecret(pb.DeleteSecretRequest(secret_id=key), metadata=md),
            grpc.StatusCode.FAILED_PRECONDITION, "SECRET_IN_USE")
    _raises(lambda: secrets.UpdateSecret(pb.UpdateSecretRequest(
        secret_id=key, secret=pb.Secret(name=_name("renamed"))), metadata=md),
        grpc.StatusCode.FAILED_PRECONDITION, "SECRET_IN_USE")


def test_secret_value_never_comes_back_and_reveal_is_audited(service, me):
    secrets = service.stub(pb_grpc.SecretServiceStub)
    access = service.stub(pb_grpc.SecretAccessServiceStub)
    md = me.metadata()
    value = "sk-live-" + uuid.uuid4().hex
    created = secrets.CreateSecret(pb.CreateSecretRequest(secret=pb.Secret(
        name=_name("key"), value=value, secret_type=pb.SECRET_TYPE_API_KEY)), metadata=md)
    assert created.value == "" and created.value_hint == "…" + value[-4:]
    assert created.version == 1 and created.fingerprint.startswith("hmac-sha256:")
    assert value not in str(created)
    revealed = access.RevealSecret(pb.RevealSecretRequest(secret_id=created.name,
                                                          requested_by="agents"), metadata=md)
    assert revealed.value == value
    updated = secrets.UpdateSecret(pb.UpdateSecretRequest(
        secret_id=created.id, secret=pb.Secret(value=value + "-2")), metadata=md)
    assert (updated.id, updated.version) == (created.id, 2)
    assert updated.fingerprint != created.fingerprint
    assert access.RevealSecret(pb.RevealSecretRequest(secret_id=created.id, requested_by="t"),
                               metadata=md).value == value + "-2"
    _raises(lambda: access.RevealSecret(pb.RevealSecretRequest(secret_id=created.id,
                                                               requested_by="t"),
                                        metadata=Identity().metadata()),
            grpc.StatusCode.NOT_FOUND, "SECRET_NOT_FOUND")
    _raises(lambda: access.RevealSecret(pb.RevealSecretRequest(secret_id=created.id),
                                        metadata=md), grpc.StatusCode.INVALID_ARGUMENT)
    _raises(lambda: secrets.CreateSecret(pb.CreateSecretRequest(secret=pb.Secret(
        name=_name())), metadata=md), grpc.StatusCode.INVALID_ARGUMENT)

    from sqlmodel import select

    from mesh.runtime.audit import AuditEvent

    db = service.running.runtime.database
    with db.session() as session:
        events = session.exec(select(AuditEvent).where(AuditEvent.tenant_id == me.tenant_id)
                              .order_by(AuditEvent.created_at)).all()
    assert [(e.action, e.resource_type) for e in events] == [
        ("secret.create", "secret"), ("secret.reveal", "secret"), ("secret.update", "secret"),
        ("secret.reveal", "secret")]
    assert events[1].details["requested_by"] == "agents" and events[1].actor == me.user_id
    assert all(value not in str(e.details) for e in events)


def test_wrong_kek_is_refused_at_start(tmp_path):
    key = base64.b64encode(os.urandom(32)).decode()
    first = ServiceHarness(DEFINITION, tmp_path, secrets_kek=key, secrets_kek_id="k1")
    first.stub(pb_grpc.SecretServiceStub).CreateSecret(pb.CreateSecretRequest(
        secret=pb.Secret(name="s", value="v" * 20)), metadata=Identity().metadata())
    first.close()
    other = base64.b64encode(os.urandom(32)).decode()
    with pytest.raises(Exception, match="not the key this database's secrets were encrypted"):
        ServiceHarness(DEFINITION, tmp_path, secrets_kek=other, secrets_kek_id="k1")
    with pytest.raises(Exception, match="k1 that are not configured"):
        ServiceHarness(DEFINITION, tmp_path, secrets_kek=other, secrets_kek_id="k2")
    with pytest.raises(Exception, match="must be 32 bytes"):
        ServiceHarness(DEFINITION, tmp_path, secrets_kek="c2hvcnQ=", secrets_kek_id="k1")


# ---- found by Schemathesis over the published OpenAPI document (tests/e2e) -------------------
def test_a_label_with_a_version_selects_that_version_only_if_labelled(service, me):
    """Both query parameters are allowed by the document, so both together are not a 400: the
    version, if the label points at it, else NOT_FOUND."""
    stub = service.stub(pb_grpc.PromptServiceStub)
    md = me.metadata()
    name = _name("both")
    stub.CreatePrompt(pb.CreatePromptRequest(prompt=pb.Prompt(name=name, content="a")), metadata=md)
    stub.CreatePromptVersion(pb.CreatePromptVersionRequest(
        prompt_id=name, prompt_version=pb.PromptVersion(content="b")), metadata=md)
    stub.SetPromptLabel(pb.SetPromptLabelRequest(prompt_id=name, label="production", version=1),
                        metadata=md)
    got = stub.GetPrompt(pb.GetPromptRequest(prompt_id=name, label="production", version=1),
                         metadata=md)
    assert got.content == "a"
    _raises(lambda: stub.GetPrompt(pb.GetPromptRequest(prompt_id=name, label="production",
                                                       version=2), metadata=md),
            grpc.StatusCode.NOT_FOUND, "PROMPT_LABEL_NOT_FOUND")


def test_declared_limits_are_enforced_for_every_request(service, me):
    """The runtime checks the proto's limits before the handler: what the document forbids is
    refused with the field named as a REST client wrote it (no `skill.` prefix)."""
    skills = service.stub(pb_grpc.SkillServiceStub)
    md = me.metadata()
    error = _raises(lambda: skills.ListSkills(pb.ListSkillsRequest(order_by="name;drop"),
                                              metadata=md), grpc.StatusCode.INVALID_ARGUMENT)
    assert field_violations(error) == ["order_by"]
    error = _raises(lambda: skills.CreateSkill(pb.CreateSkillRequest(skill=pb.Skill(
        name=_name(), tags=["ok", ""])), metadata=md), grpc.StatusCode.INVALID_ARGUMENT)
    assert field_violations(error) == ["tags[1]"]
    error = _raises(lambda: skills.SearchSkills(pb.SearchSkillsRequest(q="  "), metadata=md),
                    grpc.StatusCode.INVALID_ARGUMENT)
    assert field_violations(error) == ["q"]
    prompts = service.stub(pb_grpc.PromptServiceStub)
    error = _raises(lambda: prompts.SetPromptLabel(pb.SetPromptLabelRequest(
        prompt_id=_name(), label="production", version=-3), metadata=md),
        grpc.StatusCode.INVALID_ARGUMENT)
    assert field_violations(error) == ["version"]


def test_an_endpoint_url_python_cannot_parse_is_a_400(service, me):
    stub = service.stub(pb_grpc.ModelServiceStub)
    _raises(lambda: stub.CreateModel(pb.CreateModelRequest(model=pb.Model(
        name=_name(), provider="ollama", model_id="llama3", endpoint_url="http://[")),
        metadata=me.metadata()), grpc.StatusCode.INVALID_ARGUMENT)
