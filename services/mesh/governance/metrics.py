"""The governance service's counters (names in mesh.runtime.metrics): decisions by action,
outcome and reason kind with their evaluation time, and model tokens and cost by model."""

from __future__ import annotations

from mesh.runtime import metrics


class GovernanceMetrics:
    def decided(self, action: str, allowed: bool, reason: str, micros: int) -> None:
        metrics.DECISIONS.labels(action, "allowed" if allowed else "denied",
                                 metrics.reason_kind(allowed, reason)).inc()
        metrics.DECISION_LATENCY.labels(action).observe(micros / 1e6)

    def model_usage(self, model: str, tokens: int, cost_usd: float) -> None:
        model = model or "unknown"
        if tokens > 0:
            metrics.MODEL_TOKENS.labels(model).inc(tokens)
        if cost_usd > 0:
            metrics.MODEL_COST.labels(model).inc(cost_usd)
