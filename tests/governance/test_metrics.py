"""The governance service's counters as Prometheus shows them."""

from __future__ import annotations

from prometheus_client import REGISTRY

from mesh.governance.metrics import GovernanceMetrics


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_decisions_are_counted_by_action_outcome_and_reason_kind():
    """Each decision counts once under its action, outcome and reason kind (the counters are
    looked up once per combination, then kept), with its evaluation time."""
    def counts() -> tuple[float, float, float]:
        return (_sample("agentmesh_governance_decisions_total", action="call_tool",
                        outcome="allowed", reason="policy"),
                _sample("agentmesh_governance_decisions_total", action="call_tool",
                        outcome="denied", reason="default_deny"),
                _sample("agentmesh_governance_decision_seconds_count", action="call_tool"))

    before = counts()
    metrics = GovernanceMetrics()
    metrics.decided("call_tool", True, "permitted by policy p1", 120)
    metrics.decided("call_tool", True, "permitted by policy p2", 80)
    metrics.decided("call_tool", False, "default deny: no policy permits it", 50)
    after = counts()
    assert [a - b for a, b in zip(after, before)] == [2, 1, 3]
    assert _sample("agentmesh_governance_decision_seconds_sum", action="call_tool") >= 250e-6
