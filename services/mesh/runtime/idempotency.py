"""`Idempotency-Key` on every create, for free in every service with a database.

A client that timed out (or got a 503 while a service restarted) cannot know whether its create
was stored. With an `Idempotency-Key: <any string up to 200 chars>` header (Envoy's transcoder
passes request headers to the service as gRPC metadata), a retry is safe:

* the first call runs and its answer (the serialized response message) is stored with a hash
  of the request, keyed on (tenant, caller, method, key), for `idempotency_ttl_seconds` (24 h).
  The caller is the user and the scopes the call carries (`caller_of`): a replay hands back
  only what the same caller, with the same power, was answered. Another user of the tenant, or
  an API key with other scopes, sending the same key has a key of its own: its call runs as
  itself (a developer replaying an admin's create of an API key is refused SCOPE_NOT_HELD,
  never handed the admin's key);
* a replay with the same request gets the first answer again, with `idempotency-replayed: true`,
  and creates nothing;
* the same key with a different request is refused: ABORTED (HTTP 409),
  reason IDEMPOTENCY_KEY_REUSED; while the first call is still running, a replay is refused
  the same way with reason IDEMPOTENCY_KEY_IN_PROGRESS (retry shortly);
* a first call that fails stores nothing, so the client may retry with the same key;
* a first call cut off by a crash of its process is not waited for forever: while it runs it
  holds the key on a lease of CLAIM_LEASE_SECONDS, renewed as it goes; once the lease is out,
  a replay runs the call again (a workflow step recovered after a crash waits for that).

It applies to RPCs whose name starts with `Create`, and to those the contract marks
`(agentmesh.common.v1.idempotent)` (ExecuteTool, InteractWithAgent), when they run for a tenant
(the method wrapper of mesh.runtime.server calls `Idempotency.run`). The table is the runtime's own
(`agentmesh_idempotency_keys`, in every service's database through the runtime's migration
branch); expired rows are purged as new keys arrive.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from mesh.runtime.context import SCOPES_HEADER, USER_HEADER
from mesh.runtime.db import Database
from mesh.runtime.errors import Aborted, invalid_field
from mesh.runtime.tables import utcnow
from mesh.runtime.settings import Settings

log = logging.getLogger("mesh.idempotency")
HEADER = "idempotency-key"
REPLAYED_HEADER = "idempotency-replayed"
MAX_KEY_LENGTH = 200
IN_PROGRESS = "IDEMPOTENCY_KEY_IN_PROGRESS"
CLAIM_LEASE_SECONDS = 30.0

_metadata = sa.MetaData()
TABLE = sa.Table(
    "agentmesh_idempotency_keys", _metadata,
    sa.Column("tenant_id", sa.String(), primary_key=True),
    sa.Column("caller", sa.String(), primary_key=True),
    sa.Column("method", sa.String(), primary_key=True),
    sa.Column("key", sa.String(), primary_key=True),
    sa.Column("request_hash", sa.String(), nullable=False),
    sa.Column("response", sa.LargeBinary(), nullable=True),  # NULL while the first call runs
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False, index=True),
)


def applies_to(method) -> bool:
    """Whether an RPC (its MethodDescriptor) honours the header: every `Create...`, and the
    RPCs the contract marks `(agentmesh.common.v1.idempotent)`."""
    if method.name.startswith("Create"):
        return True
    from agentmesh.common.v1 import annotations_pb2

    return method.GetOptions().Extensions[annotations_pb2.idempotent]


def caller_of(metadata: dict[str, str]) -> str:
    """Whom a stored answer belongs to: the user and a digest of the scopes the call carries
    (a JWT's, or an API key's as ext_authz narrowed them), so neither another user nor the same
    user's narrower API key is handed an answer it could not have received itself."""
    scopes = sorted(set(metadata.get(SCOPES_HEADER, "").replace(",", " ").split()))
    digest = hashlib.sha256(" ".join(scopes).encode()).hexdigest()[:32]
    return f"{metadata.get(USER_HEADER, '')}:{digest}"


class _Stored:
    """An answer already serialized: sent as it is."""

    def __init__(self, data: bytes) -> None:
        self.data = data


def serializer(response_class):
    """The response serializer of an idempotent method: a replayed answer goes out as stored."""
    serialize = response_class.SerializeToString

    def dump(response) -> bytes:
        return response.data if type(response) is _Stored else serialize(response)

    return dump


class Idempotency:
    """Keys of one service's database."""

    def __init__(self, database: Database, settings: Settings) -> None:
        self.db = database
        self.ttl = timedelta(seconds=settings.idempotency_ttl_seconds)

    async def run(self, method: str, key: str, tenant: str, caller: str, request, context,
                  call):
        """`await call()` once per (tenant, caller, method, key); a replay answers the first
        result."""
        if len(key) > MAX_KEY_LENGTH:
            raise invalid_field("Idempotency-Key", f"at most {MAX_KEY_LENGTH} characters")
        digest = hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest()
        record = (tenant, caller, method, key)
        stored = await self._claim(record, digest)
        if stored is not None:
            await context.send_initial_metadata(((REPLAYED_HEADER, "true"),))
            return _Stored(stored)
        renewal = asyncio.create_task(self._renew(record))
        try:
            response = await call()
        except BaseException:
            renewal.cancel()
            await self._finish(record, None)
            raise
        renewal.cancel()
        await self._finish(record, response.SerializeToString())
        return response

    @staticmethod
    def _where(record: tuple[str, str, str, str]) -> tuple:
        tenant, caller, method, key = record
        return (TABLE.c.tenant_id == tenant, TABLE.c.caller == caller, TABLE.c.method == method,
                TABLE.c.key == key)

    async def _renew(self, record: tuple[str, str, str, str]) -> None:
        """Keeps a running call's claim alive (the lease runs out only if its process dies)."""
        where = (*self._where(record), TABLE.c.response.is_(None))
        while True:
            await asyncio.sleep(CLAIM_LEASE_SECONDS / 3)
            expires = utcnow() + timedelta(seconds=CLAIM_LEASE_SECONDS)
            try:
                await self.db.write(lambda session: session.execute(
                    TABLE.update().where(*where).values(expires_at=expires)))
            except Exception:  # noqa: BLE001 - the next renewal tries again
                log.warning("could not renew the claim of an idempotency key", exc_info=True)

    async def _claim(self, record: tuple[str, str, str, str], digest: str) -> bytes | None:
        """Registers the key (None: this call runs) or returns the stored answer."""
        now = utcnow()
        tenant, caller, method, key = record

        def claim(session) -> bytes | None:
            session.execute(TABLE.delete().where(TABLE.c.expires_at < now))
            where = self._where(record)
            row = session.execute(sa.select(TABLE.c.request_hash, TABLE.c.response)
                                  .where(*where)).first()
            if row is None:
                try:
                    with session.begin_nested():
                        # A claim: a lease that the running call renews (an expired one,
                        # of a call whose process died, was purged above).
                        session.execute(TABLE.insert().values(
                            tenant_id=tenant, caller=caller, method=method, key=key,
                            request_hash=digest,
                            response=None, created_at=now,
                            expires_at=now + timedelta(seconds=CLAIM_LEASE_SECONDS)))
                    return None
                except IntegrityError:
                    row = session.execute(sa.select(TABLE.c.request_hash, TABLE.c.response)
                                          .where(*where)).first()
            if row.request_hash != digest:
                raise Aborted("this Idempotency-Key was used with a different request",
                              reason="IDEMPOTENCY_KEY_REUSED", details={"idempotency_key": key})
            if row.response is None:
                raise Aborted("a request with this Idempotency-Key is still running; retry",
                              reason=IN_PROGRESS,
                              details={"idempotency_key": key})
            return bytes(row.response)

        return await self.db.write(claim)

    async def _finish(self, record: tuple[str, str, str, str], response: bytes | None) -> None:
        where = self._where(record)

        def finish(session) -> None:
            if response is None:  # the first call failed: free the key for a retry
                session.execute(TABLE.delete().where(*where, TABLE.c.response.is_(None)))
            else:
                session.execute(TABLE.update().where(*where).values(
                    response=response, expires_at=utcnow() + self.ttl))

        await self.db.write(finish)
