"""The integration service: operations that span services, done through the owning services'
gRPC APIs as the caller (`runtime.peers`), and the tenant's webhooks and API connections, which
it owns. The servicer is `api/integration.py`; its state (`state.py`) holds the egress guard and
the webhook outbox. See docs/integration.md."""

from __future__ import annotations

from mesh.integration.api.integration import IntegrationService
from mesh.integration.models import ActivityRow, ApiConnectionRow, DeliveryRow, WebhookRow
from mesh.integration.state import IntegrationState
from mesh.runtime.service import ServiceDefinition

DEFINITION = ServiceDefinition("integration", servicers=[IntegrationService],
                               tables=[WebhookRow, DeliveryRow, ApiConnectionRow, ActivityRow],
                               state=IntegrationState)
