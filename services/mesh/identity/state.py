"""What the identity service keeps between calls: which tenants operate the platform (looked up
once, shared by the identity servicer and the API-key authorizer)."""

from __future__ import annotations

from mesh.identity.operators import Operators
from mesh.runtime.service import Runtime


class IdentityState:
    def __init__(self, runtime: Runtime) -> None:
        self.operators = Operators(runtime.database, runtime.settings)
