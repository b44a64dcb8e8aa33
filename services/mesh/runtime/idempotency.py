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

It applies to RPCs whose name starts with `Create` and that run for a tenant. The table is the
runtime's own (`agentmesh_idempotency_keys`, created on start in each service's database, apart
from the service's Alembic migrations); expired rows are purged as new keys arrive.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import timedelta

import grpc
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from mesh.runtime.context import TENANT_HEADER
from mesh.runtime.db import Database
from mesh.runtime.errors import Aborted, invalid_field
from mesh.runtime.repository import utcnow
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


def ensure_table(database: Database) -> None:
    _metadata.create_all(database.engine, tables=[TABLE], checkfirst=True)


class IdempotencyInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, database: Database, settings: Settings) -> None:
        self.db = database
        self.ttl = timedelta(seconds=settings.idempotency_ttl_seconds)

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

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not handler.unary_unary or not applies_to(method):
            return handler
        metadata = dict(handler_call_details.invocation_metadata or ())
        key = metadata.get(HEADER, "")
        tenant = metadata.get(TENANT_HEADER, "")
        if not key or not tenant:
            return handler
        inner, serialize = handler.unary_unary, handler.response_serializer

        async def unary_unary(request, context):
            if len(key) > MAX_KEY_LENGTH:
                raise invalid_field("Idempotency-Key", f"at most {MAX_KEY_LENGTH} characters")
            digest = hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest()
            stored = await self._claim(tenant, method, key, digest)
            if stored is not None:
                await context.send_initial_metadata(((REPLAYED_HEADER, "true"),))
                return _Stored(stored)
            try:
                response = await inner(request, context)
            except BaseException:
                await self._finish(tenant, method, key, None)
                raise
            await self._finish(tenant, method, key, serialize(response))
            return response

        def serializer(response) -> bytes:
            return response.data if isinstance(response, _Stored) else serialize(response)

        return grpc.unary_unary_rpc_method_handler(unary_unary, handler.request_deserializer,
                                                   serializer)
