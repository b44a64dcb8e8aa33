"""The system service: the platform's health, status, metrics, runtime configuration, feature
flags, restarts, cache clears, backups and API docs (docs/system.md). The servicer is in
mesh/system/api/system.py; what lives between calls in mesh/system/state.py."""

from __future__ import annotations

from mesh.runtime.service import ServiceDefinition
from mesh.system.api.system import SystemService
from mesh.system.models import AlertRow, CacheClearRow, ConfigVersionRow, FeatureFlagRow
from mesh.system.state import SystemState

DEFINITION = ServiceDefinition("system", servicers=[SystemService],
                               tables=[ConfigVersionRow, FeatureFlagRow, AlertRow, CacheClearRow],
                               state=SystemState)
