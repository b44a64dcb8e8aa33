"""The governance service (docs/governance.md): policies and the decisions they make, dispatch,
rate limits and budgets, decision webhooks; and Envoy's RateLimitService for the gateway. The
servicers are in `mesh.governance.api`, what they share in `mesh.governance.state`.
"""

from __future__ import annotations

from mesh.governance.api.governance_service import GovernanceService
from mesh.governance.api.rate_limit_service import RateLimitService
from mesh.governance.models import (BudgetRow, DecisionDeliveryRow, DecisionRow, PolicyRow,
                                    PolicySetRow,
                                    PolicyVersionRow, WebhookRow)
from mesh.governance.state import GovernanceState
from mesh.runtime.service import ServiceDefinition

DEFINITION = ServiceDefinition(
    "governance", servicers=[GovernanceService, RateLimitService],
    tables=[PolicyRow, PolicyVersionRow, PolicySetRow, DecisionRow, WebhookRow, BudgetRow,
            DecisionDeliveryRow],
    state=GovernanceState)
