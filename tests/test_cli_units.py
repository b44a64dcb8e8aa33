"""The pure parts of the `agentmesh` command: what `apply` counts as a change, how it reads
files and folders, contexts read from an older config file, exit codes per kind of error."""

from __future__ import annotations

import json

import pytest

from agentmesh_client import errors, models
from agentmesh_client.cli import apply, config, exits
from agentmesh_client.cli.output import InputError


def test_apply_compares_only_what_the_document_gives():
    remote = models.Agent.model_validate({
        "id": "a1", "name": "triage", "model": "gpt-4o", "status": "AGENT_STATUS_DRAFT",
        "description": "", "config": {"temperature": 0.2, "added_by_server": True},
        "created_at": "2026-01-01T00:00:00Z"})
    same = {"name": "triage", "model": "gpt-4o", "status": "draft",
            "config": {"temperature": 0.2}, "description": ""}
    assert apply.changes(same, remote) == []
    assert apply.changes({**same, "description": "new", "model": "gpt-4o-mini"}, remote) == [
        "model", "description"]  # in the document's order
    # A secret's value is never shown by the server: set on create, not compared.
    secret = models.Secret.model_validate({"name": "k", "value": "", "value_hint": "…abcd"})
    assert apply.changes({"name": "k", "value": "sk-1234abcd"}, secret) == []


@pytest.mark.parametrize(("local", "remote", "equal"), [
    ([{"id": "a"}], [{"id": "a", "depends_on": []}], True),
    ([{"id": "a"}], [{"id": "a"}, {"id": "b"}], False),
    (5, "5", True),  # a 64-bit integer arrives as a string
    (True, False, False),
    ("", None, True),
    ({"a": 1}, None, False),
])
def test_same(local, remote, equal):
    assert apply.same(local, remote) is equal


def test_documents_of_a_folder_in_the_order_references_need(tmp_path):
    (tmp_path / "a.yaml").write_text("kind: Agent\nname: x\nmodel: m\n---\nkind: model\nname: m\n")
    (tmp_path / "b.json").write_text(json.dumps([{"kind": "secrets", "name": "s", "value": "v"}]))
    (tmp_path / "readme.md").write_text("ignored")
    (tmp_path / "p.yaml").write_text("kind: Policy\nname: p\n")
    found = [(noun, fields["name"]) for _, (_, noun), fields in apply.documents([str(tmp_path)])]
    assert found == [("Secret", "s"), ("Model", "m"), ("Agent", "x"), ("Policy", "p")]
    (tmp_path / "p.yaml").unlink()
    (tmp_path / "c.yaml").write_text("kind: Spaceship\nname: z\n")
    with pytest.raises(InputError, match="Spaceship"):
        apply.documents([str(tmp_path)])
    (tmp_path / "c.yaml").write_text("kind: Agent\nmodel: m\n")
    with pytest.raises(InputError, match="needs a name"):
        apply.documents([str(tmp_path)])


def test_an_older_one_session_config_reads_as_the_default_context(tmp_path, monkeypatch):
    monkeypatch.setenv("AGENTMESH_CONFIG_DIR", str(tmp_path))
    monkeypatch.delenv("AGENTMESH_CONTEXT", raising=False)
    (tmp_path / "config.json").write_text(json.dumps(
        {"url": "http://old:8080", "email": "a@b.c", "access_token": "t", "refresh_token": "r"}))
    assert config.current_name() == "default"
    assert config.context()["url"] == "http://old:8080"
    config.update_context("other", {"url": "http://new:8080"})
    data = json.loads((tmp_path / "config.json").read_text())
    assert set(data["contexts"]) == {"default", "other"}
    assert data["current_context"] == "default"


@pytest.mark.parametrize(("status", "code"), [
    (400, exits.INVALID), (401, exits.UNAUTHENTICATED), (403, exits.PERMISSION_DENIED),
    (404, exits.NOT_FOUND), (409, exits.CONFLICT), (413, exits.INVALID),
    (429, exits.RATE_LIMITED), (500, exits.SERVER_ERROR), (503, exits.SERVER_ERROR),
    (418, exits.FAILED)])
def test_each_kind_of_failure_has_its_exit_code(status, code):
    assert exits.code_of(errors.make_error(status, "X", "m")) == code
    assert exits.code_of(errors.Unreachable("http://x", "refused")) == exits.UNREACHABLE
    assert len({exits.OK, exits.FAILED, exits.USAGE, exits.UNAUTHENTICATED,
                exits.PERMISSION_DENIED, exits.NOT_FOUND, exits.CONFLICT, exits.INVALID,
                exits.RATE_LIMITED, exits.UNREACHABLE, exits.SERVER_ERROR}) == 11
