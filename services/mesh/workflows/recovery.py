"""No execution is left stuck: when the engine starts, the rows the API shows and DBOS's
interpreters are brought in line (`reconcile`); while it runs, each replica keeps a heartbeat and
takes over the pending executions of a replica that is gone for good (`watch_executors`).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from dbos import DBOS
from sqlmodel import Session, select

from mesh.runtime.db import serialize
from mesh.runtime.tables import utcnow
from mesh.workflows import control
from mesh.workflows.engine import QUEUE, Engine
from mesh.workflows.models import ENDED, ExecutionRow, ExecutorRow
from mesh.workflows.projection import error_record

log = logging.getLogger("mesh.workflows.recovery")
E = "EXECUTION_STATUS_"
# A replica's heartbeat, and how long without one before another replica takes its pending
# executions over (a pod that is gone for good; one restarted under its name recovers its own).
HEARTBEAT_SECONDS = 5.0
EXECUTOR_LOST_AFTER_SECONDS = 30.0
# A process with no replica id is the service's only replica (`agentmesh up`, on SQLite or
# PostgreSQL): no other replica reads its heartbeat, and what other executors left (an earlier
# run with replicas) is taken over at most that much later; so it beats and looks less often,
# still well inside EXECUTOR_LOST_AFTER_SECONDS (a replica wrongly started beside it would not
# take its executions). A beat and a look every 5 s made 36 of the idle mesh's ~350 table scans
# a minute on PostgreSQL (pg_stat_user_tables), and 12 writes.
ALONE_HEARTBEAT_SECONDS = 15.0


# ---- replicas --------------------------------------------------------------------------------

async def heartbeat(engine: Engine) -> None:
    executor_id, now = engine.executor_id, utcnow()

    def beat(session: Session) -> None:
        row = session.get(ExecutorRow, executor_id)
        if row is None:
            session.add(ExecutorRow(executor_id=executor_id, started_at=now, heartbeat_at=now))
        else:
            row.heartbeat_at = now
            session.add(row)
    await engine.db.write(beat)


async def recover_lost_executors(engine: Engine) -> list[str]:
    """Executors without a heartbeat for EXECUTOR_LOST_AFTER_SECONDS are gone: their pending
    interpreters go back on the queue (DBOS recovery, which only matches rows still owned by
    the lost executor, so an execution is never taken from a live one), and any replica
    runs them from their checkpoints. One replica does it at a time."""
    cutoff = utcnow() - timedelta(seconds=EXECUTOR_LOST_AFTER_SECONDS)
    me = engine.executor_id

    def lost_ones(session: Session) -> list[ExecutorRow]:
        return session.exec(select(ExecutorRow).where(ExecutorRow.heartbeat_at < cutoff,
                                                      ExecutorRow.executor_id != me)).all()

    def claim(session: Session) -> list[str]:
        serialize(session, "workflows-executor-recovery")
        lost = lost_ones(session)
        for row in lost:
            session.delete(row)
        return [row.executor_id for row in lost]
    # A read decides first: the answer is nearly always none, and a write transaction that
    # finds nothing still takes the write lock (SQLite's, or the advisory lock) every beat.
    if not await engine.db.read(lost_ones):
        return []
    lost = await engine.db.write(claim)
    if lost:
        log.warning("recovering the pending executions of lost replica(s) %s", ", ".join(lost))
        await asyncio.to_thread(DBOS._recover_pending_workflows, lost)
    return lost


async def watch_executors(engine: Engine) -> None:
    while True:
        await asyncio.sleep(HEARTBEAT_SECONDS if engine.settings.replica_id
                            else ALONE_HEARTBEAT_SECONDS)
        try:
            await heartbeat(engine)
            await recover_lost_executors(engine)
        except asyncio.CancelledError:
            raise
        except Exception:  # the database is away for a moment: try again next beat
            log.warning("executor heartbeat failed", exc_info=True)


# ---- rows and interpreters in line ---------------------------------------------------------

async def reconcile(engine: Engine) -> None:
    """No stuck runs: an execution the API shows as not ended has a DBOS workflow that is
    running, queued or recovered; one whose interpreter never got enqueued (a crash between
    the insert and the enqueue) is enqueued now; one whose interpreter ended without
    updating the row is brought in line."""
    rows = await engine.db.read(lambda s: [
        (r.id, r.dbos_workflow_id, r.priority, r.tenant_id, r.parent_execution_id)
        for r in s.exec(select(ExecutionRow).where(
            ExecutionRow.status.not_in(list(ENDED)))).all()])
    for execution_id, workflow_id, priority, tenant_id, parent in rows:
        current = await DBOS.get_workflow_status_async(workflow_id or execution_id)
        if current is None:
            if parent:
                await engine.launch(execution_id, None)
            else:
                await engine.enqueue(execution_id, tenant_id, priority, None)
        elif current.status == "ENQUEUED" and current.queue_name == QUEUE and \
                current.queue_partition_key is None:
            # Queued by a build whose queue had no partitions: no partition would ever
            # dequeue it, so it goes back on the queue in its tenant's.
            await control.requeue_in_partition(engine, execution_id)
        elif current.status in ("SUCCESS", "ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"):
            await _finish_from_dbos(engine, execution_id, current.status,
                                    str(current.error or ""))
    # A cancel or terminate cut off by a crash after the row was written and before DBOS
    # heard of it: the row says ended, so DBOS must stop the interpreter too.
    since = utcnow() - timedelta(days=1)
    stopped = await engine.db.read(lambda s: [r.dbos_workflow_id or r.id for r in s.exec(
        select(ExecutionRow).where(ExecutionRow.status.in_([E + "CANCELLED", E + "FAILED"]),
                                   ExecutionRow.updated_at >= since)).all()])
    for workflow_id in stopped:
        current = await DBOS.get_workflow_status_async(workflow_id)
        if current is not None and current.status in ("PENDING", "ENQUEUED"):
            await DBOS.cancel_workflow_async(workflow_id)


async def _finish_from_dbos(engine: Engine, execution_id: str, status: str, error: str) -> None:
    def apply(row: ExecutionRow) -> None:
        if row.status in ENDED:
            return
        if status == "SUCCESS":
            row.status = E + "COMPLETED"
        elif status == "CANCELLED":
            row.status = E + "CANCELLED"
        else:
            row.status = E + "FAILED"
            row.errors = [*row.errors, error_record("", "INTERNAL", error or status)]
        row.ended_at = utcnow()
    await engine.projection.update(execution_id, apply)
