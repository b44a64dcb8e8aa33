"""What a service is, declared once:

    DEFINITION = ServiceDefinition("agents", servicers=[AgentService, CallService],
                                   tables=[AgentRow, CallRow])

Everything else is derived: the gRPC registration of each servicer (from the generated
`<Name>Servicer` base it extends), the names for health and reflection, the database and its
migrations (the service's `migrations/` folder plus the runtime's own), and the metadata that
`agentmesh db revision` and the drift test compare with the migrations. A service without a
module of its own runs the generated servicers untouched (`ServiceDefinition.placeholder`), so
each of its RPCs answers UNIMPLEMENTED until it is built.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import sqlalchemy as sa

from mesh.runtime.settings import Settings

if TYPE_CHECKING:
    from mesh.runtime.db import Database
    from mesh.runtime.peers import Peers
    from mesh.runtime.revocation import RevocationGuard

# (add_XServicer_to_server, servicer, full service name)
Registration = tuple[Callable[[Any, grpc.aio.Server], None], Any, str]


@dataclass
class Runtime:
    """What a servicer is given: its service's settings, database, peers and state."""

    name: str
    settings: Settings
    peers: "Peers"
    db: "Database | None" = None
    # The process's revocation list (mesh.runtime.revocation), for work that outlives a call
    # (the live service's open sockets).
    revocations: "RevocationGuard | None" = None
    # The service's long-lived objects, built once by `ServiceDefinition.state` before the
    # servicers (None for a service without any). A servicer keeps a typed reference:
    # `self.state: GovernanceState = runtime.state`.
    state: Any = None
    # Called when the service starts to drain (SIGTERM), before in-flight calls get their grace
    # period: what holds a call open (a long poll, mesh.runtime.watch) answers it now.
    drain_hooks: list[Callable[[], None]] = field(default_factory=list)
    # What the service takes from this process's own runtime without a call, by name (the
    # observability service's "spans" and "audit"; mesh.runtime.local.receiver).
    receivers: dict[str, Callable[[Sequence[Any]], Awaitable[Any]]] = \
        field(default_factory=dict)

    @property
    def database(self) -> "Database":
        if self.db is None:
            raise RuntimeError(f"service {self.name!r} declares no tables, so it has no database")
        return self.db


@dataclass
class ServiceDefinition:
    name: str
    # Servicer classes; each is built as `cls(runtime)`.
    servicers: Sequence[type] = ()
    # SQLModel table classes the service owns; a service with tables gets a database.
    tables: Sequence[type] = ()
    # The one place a service keeps what outlives a call (caches, senders, an engine, counters):
    # `state(runtime)` is called once, before the servicers are built, and the object is
    # `runtime.state` for the servicers and the hooks. Its optional `async start()` runs after
    # the server starts and before it reports SERVING; its optional `async close()` when the
    # service stops, after the server has drained.
    state: Callable[[Runtime], Any] | None = None
    # Work after the state starts and before the service reports SERVING (e.g. first signing
    # keys), and after the server stops, before the state closes.
    on_start: Callable[[Runtime], Awaitable[None]] | None = None
    on_stop: Callable[[Runtime], Awaitable[None]] | None = None
    # gRPC handlers registered as they are, for a method whose service is not one of ours
    # (the OTLP receiver of observability).
    extra_handlers: Callable[[Runtime], Sequence[grpc.GenericRpcHandler]] | None = None
    placeholder: bool = False

    @classmethod
    def placeholder_for(cls, name: str) -> "ServiceDefinition":
        """The generated servicers of a service not built yet: every RPC is UNIMPLEMENTED."""
        package = importlib.import_module(f"agentmesh.{name}.v1")
        servicers = []
        for module_info in pkgutil.iter_modules(package.__path__):
            if module_info.name.endswith("_pb2_grpc"):
                module = importlib.import_module(f"{package.__name__}.{module_info.name}")
                servicers.extend(getattr(module, attr) for attr in dir(module)
                                 if attr.endswith("Servicer") and isinstance(getattr(module, attr), type))
        return cls(name=name, servicers=servicers, placeholder=True)

    @property
    def package(self) -> str:
        return f"mesh.{self.name}"

    def migration_dirs(self) -> list[Path]:
        dirs = [Path(str(resources.files("mesh.runtime") / "migrations"))]
        own = resources.files(self.package) / "migrations"
        if own.is_dir():
            dirs.append(Path(str(own)))
        return dirs

    def metadata(self) -> sa.MetaData:
        """The service's tables (and the runtime's), apart from every other service's."""
        from mesh.runtime import idempotency
        from mesh.runtime.audit import AuditEvent
        from mesh.runtime.platform_events import PlatformEventRow
        from mesh.runtime.tables import RowCount

        metadata = sa.MetaData()
        for table in [RowCount.__table__, idempotency.TABLE, AuditEvent.__table__,
                      PlatformEventRow.__table__,
                      *(t.__table__ for t in self.tables)]:
            table.to_metadata(metadata)
        return metadata

    def build(self, runtime: Runtime) -> list[Any]:
        """The servicers, each given the runtime (with its state, made here once)."""
        if self.placeholder:
            return [cls() for cls in self.servicers]
        if self.state is not None and runtime.state is None:
            runtime.state = self.state(runtime)
        return [cls(runtime) for cls in self.servicers]

    async def start_state(self, runtime: Runtime) -> None:
        start = getattr(runtime.state, "start", None)
        if start is not None:
            await start()
        if self.on_start:
            await self.on_start(runtime)

    async def stop_state(self, runtime: Runtime) -> None:
        if self.on_stop:
            await self.on_stop(runtime)
        close = getattr(runtime.state, "close", None)
        if close is not None:
            await close()


def registration(servicer: Any) -> Registration:
    """How the generated code registers this servicer: found from the `<Name>Servicer` base."""
    for base in type(servicer).__mro__:
        module_name = base.__module__
        if module_name.endswith("_pb2_grpc") and base.__name__.endswith("Servicer"):
            module = sys.modules[module_name]
            messages = importlib.import_module(module_name.removesuffix("_grpc"))
            service = messages.DESCRIPTOR.services_by_name[base.__name__.removesuffix("Servicer")]
            return getattr(module, f"add_{base.__name__}_to_server"), servicer, service.full_name
    raise TypeError(f"{type(servicer).__name__} does not extend a generated *Servicer class")


def service_descriptor(servicer: Any):
    add, _, full_name = registration(servicer)
    messages = importlib.import_module(add.__module__.removesuffix("_grpc"))
    return next(s for s in messages.DESCRIPTOR.services_by_name.values()
                if s.full_name == full_name)
