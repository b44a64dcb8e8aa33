"""The governance service's counters (names in mesh.runtime.metrics): decisions by action,
outcome and reason kind with their evaluation time, and model tokens and cost by model."""

from __future__ import annotations

from mesh.runtime import metrics


class GovernanceMetrics:
    def __init__(self) -> None:
        # The labelled counters of each (action, outcome, reason kind), looked up once: every
        # action of the platform is decided, and a labels() lookup takes a lock each time.
        self._decisions: dict[tuple[str, bool, str], tuple] = {}

    def decided(self, action: str, allowed: bool, reason: str, micros: int) -> None:
        kind = metrics.reason_kind(allowed, reason)
        counters = self._decisions.get((action, allowed, kind))
        if counters is None:
            counters = self._decisions[(action, allowed, kind)] = (
                metrics.DECISIONS.labels(action, "allowed" if allowed else "denied", kind),
                metrics.DECISION_LATENCY.labels(action))
        counters[0].inc()
        counters[1].observe(micros / 1e6)

    def model_usage(self, model: str, tokens: int, cost_usd: float) -> None:
        model = model or "unknown"
        if tokens > 0:
            metrics.MODEL_TOKENS.labels(model).inc(tokens)
        if cost_usd > 0:
            metrics.MODEL_COST.labels(model).inc(cost_usd)
