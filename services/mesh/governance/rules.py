"""The dispatch rules the OpenAPI document states too (`mesh.runtime.limits.When`): each intent
needs the id of its target in `context` (`INTENTS`, which `Dispatch` reads), unless it has
something to do without one (`call_reasoning`: the reasoning heartbeat)."""

from __future__ import annotations

from mesh.governance.dispatch import INTENTS
from mesh.runtime.limits import When

CONDITIONS: dict[str, tuple[When, ...]] = {
    "agentmesh.governance.v1.DispatchRequest": tuple(
        When("intent", (intent,), {
            "required": ["context"],
            "properties": {"context": {"type": "object", "required": [operation.resource_key],
                                       "properties": {operation.resource_key: {
                                           "type": "string", "minLength": 1}}}}})
        for intent, operation in sorted(INTENTS.items()) if operation.without_target is None),
}
