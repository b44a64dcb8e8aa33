"""What the identity service keeps between calls: which tenants operate the platform (looked up
once, shared by the identity servicer and the API-key authorizer), and the revocation list its
`ListRevocations` long polls wait on (mesh/runtime/watch.py)."""

from __future__ import annotations

from mesh.identity import security
from mesh.identity.operators import Operators
from mesh.runtime.service import Runtime
from mesh.runtime.watch import Watched


class IdentityState:
    def __init__(self, runtime: Runtime) -> None:
        settings = runtime.settings
        self.operators = Operators(runtime.database, settings)
        # Another replica's revocations are seen within revocation_poll_seconds; this
        # process's at once (security.WAKE_TOPIC).
        self.revocations = Watched(runtime, security.WAKE_TOPIC, security.revocations,
                                   security.version, lambda: settings.revocation_poll_seconds)
