"""`Idempotency-Key` on every create, for free in every service with a database.

A client that timed out (or got a 503 while a service restarted) cannot know whether its create
was stored. With an `Idempotency-Key: <any string up to 200 chars>` header (Envoy's transcoder
passes request headers to the service as gRPC metadata), a retry is safe:

* the first call runs and its answer (the serialized response message) is stored with a hash
  of the request, keyed on (tenant, method, key), for `idempotency_ttl_seconds` (24 h);
* a replay with the same request gets the first answer again, with `idempotency-replayed: true`,
  and creates nothing;
* the same key with a different request is refused: ABORTED (HTTP 409),
  reason IDEMPOTENCY_KEY_REUSED; while the first call is still running, a replay is refused
  the same way with reason IDEMPOTENCY_KEY_IN_PROGRESS (retry shortly);
* a first call that fails stores nothing, so the client may retry with the same key.

It applies to RPCs whose name starts with `Create` and that run for a tenant (the method
wrapper of mesh.runtime.server calls `Idempotency.run`). The table is the runtime's own
(`agentmesh_idempotency_keys`, in every service's database through the runtime's migration
branch); expired rows are purged as new keys arrive.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from mesh.runtime.context import TENANT_HEADER
from mesh.runtime.db import Database
from mesh.runtime.errors import Aborted, invalid_field
from mesh.runtime.tables import utcnow
from mesh.runtime.settings import Settings

log = logging.getLogger("mesh.idempotency")
HEADER = "idempotency-key"
REPLAYED_HEADER = "idempotency-replayed"
MAX_KEY_LENGTH = 200

_metadata = sa.MetaData()
TABLE = sa.Table(
    "agentmesh_idempotency_keys", _metadata,
    sa.Column("tenant_id", sa.String(), primary_key=True),
    sa.Column("method", sa.String(), primary_key=True),
    sa.Column("key", sa.String(), primary_key=True),
    sa.Column("request_hash", sa.String(), nullable=False),
    sa.Column("response", sa.LargeBinary(), nullable=True),  # NULL while the first call runs
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False, index=True),
)


def applies_to(method: str) -> bool:
    return method.rsplit("/", 1)[-1].startswith("Create")


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

    async def run(self, method: str, key: str, tenant: str, request, context, call):
        """`await call()` once per (tenant, method, key); a replay answers the first result."""
        if len(key) > MAX_KEY_LENGTH:
            raise invalid_field("Idempotency-Key", f"at most {MAX_KEY_LENGTH} characters")
        digest = hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest()
        stored = await self._claim(tenant, method, key, digest)
        if stored is not None:
            await context.send_initial_metadata(((REPLAYED_HEADER, "true"),))
            return _Stored(stored)
        try:
            response = await call()
        except BaseException:
            await self._finish(tenant, method, key, None)
            raise
        await self._finish(tenant, method, key, response.SerializeToString())
        return response

    async def _claim(self, tenant: str, method: str, key: str, digest: str) -> bytes | None:
        """Registers the key (None: this call runs) or returns the stored answer."""
        now = utcnow()

        def claim(session) -> bytes | None:
            session.execute(TABLE.delete().where(TABLE.c.expires_at < now))
            where = (TABLE.c.tenant_id == tenant, TABLE.c.method == method, TABLE.c.key == key)
            row = session.execute(sa.select(TABLE.c.request_hash, TABLE.c.response)
                                  .where(*where)).first()
            if row is None:
                try:
                    with session.begin_nested():
                        session.execute(TABLE.insert().values(
                            tenant_id=tenant, method=method, key=key, request_hash=digest,
                            response=None, created_at=now, expires_at=now + self.ttl))
                    return None
                except IntegrityError:
                    row = session.execute(sa.select(TABLE.c.request_hash, TABLE.c.response)
                                          .where(*where)).first()
            if row.request_hash != digest:
                raise Aborted("this Idempotency-Key was used with a different request",
                              reason="IDEMPOTENCY_KEY_REUSED", details={"idempotency_key": key})
            if row.response is None:
                raise Aborted("a request with this Idempotency-Key is still running; retry",
                              reason="IDEMPOTENCY_KEY_IN_PROGRESS",
                              details={"idempotency_key": key})
            return bytes(row.response)

        return await self.db.write(claim)

    async def _finish(self, tenant: str, method: str, key: str, response: bytes | None) -> None:
        where = (TABLE.c.tenant_id == tenant, TABLE.c.method == method, TABLE.c.key == key)

        def finish(session) -> None:
            if response is None:  # the first call failed: free the key for a retry
                session.execute(TABLE.delete().where(*where, TABLE.c.response.is_(None)))
            else:
                session.execute(TABLE.update().where(*where).values(response=response))

        await self.db.write(finish)
