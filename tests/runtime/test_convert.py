"""`from_stored` reads the platform's own JSON exactly as protobuf's reference parser does
(`json_format.ParseDict` with unknown fields ignored, empty values dropped first, as the
workflows service did), only faster: the execution messages of the workflows service are built
with it on every start and every change."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf import json_format

from agentmesh.workflows.v1 import workflows_pb2 as pb
from mesh.runtime.convert import from_stored

STEP_STATES = [
    {"step_id": "s0", "status": "STEP_STATUS_COMPLETED", "attempts": 2,
     "started_at": "2026-12-07T10:00:00.123456Z", "ended_at": "2026-12-07T10:00:01Z",
     "output": {"n": 3, "nested": {"list": [1, "two", None, True]}}},
    {"step_id": "approve", "status": "STEP_STATUS_COMPLETED",
     "decisions": [{"user_id": "u1", "approved": True, "comment": "ok",
                    "decided_at": "2026-12-07T10:00:02.5Z", "unknown_key": 1}]},
    {"step_id": "child", "status": "STEP_STATUS_RUNNING", "child_execution_id": "c-1",
     "error": "", "output": None, "future_field": {"x": 1}},
    {"step_id": "odd", "status": "STEP_STATUS_FROM_A_NEWER_RELEASE"},
]
EXECUTION = {
    "id": "e-1", "tenant_id": "t-1", "workflow_id": "w-1", "workflow_slug": "flow",
    "workflow_version": 3, "status": "EXECUTION_STATUS_FAILED", "progress": 0.5,
    "current_phase": "", "phases_completed": ["s0"], "priority": "EXECUTION_PRIORITY_HIGH",
    "errors": [{"step_id": "s1", "code": "TIMEOUT", "message": "took too long",
                "occurred_at": "2026-12-07T10:00:03.000001Z", "attempt": 2}],
    "partial_results": {"s0": {"n": 3}}, "inputs": {"n": 1}, "outputs": {},
    "step_states": STEP_STATES, "created_by": "u1",
    "created_at": "2026-12-07T09:59:59Z", "started_at": None, "idempotency_key": None,
    "scopes": ["workflows:execute"], "metadata": {"channel": "mcp"}, "not_a_field": 1,
}


def reference(cls, data):
    kept = {k: v for k, v in data.items() if v not in (None, "", [], {})}
    return json_format.ParseDict(kept, cls(), ignore_unknown_fields=True)


def test_an_execution_reads_as_the_reference_parser_reads_it():
    assert from_stored(pb.Execution, EXECUTION) == reference(pb.Execution, EXECUTION)


def test_empty_values_stay_unset_as_the_reference_leaves_them():
    made = from_stored(pb.Execution, {"id": "e", "outputs": {}, "inputs": None, "errors": []})
    assert made == reference(pb.Execution, {"id": "e"})
    assert not made.HasField("outputs") and not made.HasField("inputs")


def test_timestamps_from_datetimes_and_text_agree():
    aware = datetime(2026, 12, 7, 10, 0, 0, 250000, tzinfo=UTC)
    made = from_stored(pb.Execution, {"created_at": aware,
                                      "updated_at": aware.replace(tzinfo=None)})
    expected = reference(pb.Execution, {"created_at": "2026-12-07T10:00:00.250Z",
                                        "updated_at": "2026-12-07T10:00:00.250Z"})
    assert made == expected


def test_what_the_constructor_refuses_is_read_by_the_reference_parser():
    nanos = {"execution_id": "e", "updated_at": "2026-12-07T10:00:00.123456789Z",
             "event_id": 4.0}  # nine digits of a second; an integral float for an int32
    assert from_stored(pb.ExecutionProgress, nanos) == reference(pb.ExecutionProgress, nanos)
