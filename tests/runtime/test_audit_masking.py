"""What the audit trail records of a row (mesh.runtime.audit, redaction.mask_record): secrets
masked by the name of their key and by value; resource names from table names."""

from __future__ import annotations

from mesh.runtime import redaction
from mesh.runtime.audit import resource_name


def test_secret_named_values_are_masked_and_references_are_kept():
    record = {"password_hash": "$argon2id$...", "key_hash": "abc", "secret": "whsec_x",
              "api_key_id": "k-1", "secret_refs": ["db-password"], "prefix": "amk_1234",
              "config": {"token": "t0k", "url": "https://x"}, "empty_secret": "",
              "name": "n"}
    masked = redaction.mask_record(record)
    assert masked["password_hash"] == masked["key_hash"] == masked["secret"] == "***"
    assert masked["config"] == {"token": "***", "url": "https://x"}
    assert masked["api_key_id"] == "k-1" and masked["secret_refs"] == ["db-password"]
    assert masked["prefix"] == "amk_1234" and masked["name"] == "n"
    assert masked["empty_secret"] == ""


def test_a_revealed_secret_value_is_masked_anywhere():
    redaction.remember("s3cr3t-value-for-audit")
    masked = redaction.mask_record({"description": "calls with s3cr3t-value-for-audit inside"})
    assert "s3cr3t-value-for-audit" not in masked["description"]


def test_resource_names_come_from_table_names():
    class Policies:
        __tablename__ = "policies"

    class ApiKeys:
        __tablename__ = "api_keys"

    class Named:
        __tablename__ = "integration_webhooks"
        __audit_resource__ = "webhook"

    assert resource_name(Policies()) == "policy"
    assert resource_name(ApiKeys()) == "api_key"
    assert resource_name(Named()) == "webhook"


def test_an_execution_start_shows_what_was_started_not_how_it_ran():
    from mesh.runtime.audit import _snapshot
    from mesh.workflows.models import ExecutionRow

    row = ExecutionRow(tenant_id="t", workflow_id="w", workflow_slug="flow", inputs={"n": 1},
                       outputs={"n": 3}, step_states=[{"step_id": "s0"}], created_by="u",
                       status="EXECUTION_STATUS_COMPLETED", scopes=["workflows:execute"])
    shown = _snapshot(row)
    assert shown["inputs"] == {"n": 1} and shown["workflow_slug"] == "flow"
    assert shown["created_by"] == "u" and shown["scopes"] == ["workflows:execute"]
    assert not {"outputs", "step_states", "partial_results", "errors"} & set(shown)
