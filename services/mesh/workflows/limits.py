"""What one tenant may make the workflows engine do (docs/workflows.md "Limits and fair share").

Checked when a workflow or schedule is saved (cycles between workflows, step count, how often a
cron fires, schedules per tenant) and when an execution starts (executions per tenant, and
for a child its depth and its tree's size). Each limit is a setting (`mesh.runtime.settings`).
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlmodel import Session, func, select

from agentmesh.workflows.v1 import workflows_pb2 as pb
from mesh.runtime.db import Database, serialize
from mesh.runtime.errors import InvalidArgument, ResourceExhausted
from mesh.runtime.settings import Settings
from mesh.runtime.tables import aware
from mesh.workflows import definition as defn
from mesh.workflows.models import LIVE, ExecutionRow, ScheduleRow
from mesh.workflows.store import find_workflow
# Step failure codes of a limit: retrying the step cannot help, and a parent whose child
# failed with one fails with the same code, so the root says which limit was reached.
DEPTH_EXCEEDED = "SUB_WORKFLOW_DEPTH_EXCEEDED"
FANOUT_EXCEEDED = "SUB_WORKFLOW_FANOUT_EXCEEDED"
STEPS_EXCEEDED = "STEP_LIMIT_EXCEEDED"
QUOTA_EXCEEDED = "EXECUTION_QUOTA_EXCEEDED"
PERMANENT = {DEPTH_EXCEEDED, FANOUT_EXCEEDED, STEPS_EXCEEDED}
PROPAGATED = {*PERMANENT, QUOTA_EXCEEDED}


# ---- definitions ---------------------------------------------------------------------------

def check_step_count(message: pb.Workflow, settings: Settings) -> None:
    limit = settings.workflow_max_steps
    if len(message.steps) > limit:
        problem = f"at most {limit} steps (got {len(message.steps)})"
        raise InvalidArgument(f"invalid workflow: steps: {problem}", reason="TOO_MANY_STEPS",
                              field_violations=[("steps", problem)],
                              details={"limit": limit, "steps": len(message.steps)})


def _sub_workflow_steps(steps) -> list[tuple[str, str]]:
    return [(step.id, step.sub_workflow.workflow_id) for step in steps
            if step.type == pb.STEP_TYPE_SUB_WORKFLOW and step.sub_workflow.workflow_id]


def refuse_cycles(session: Session, tenant_id: str, saved_id: str, slug: str,
                  message: pb.Workflow) -> None:
    """A workflow that could reach itself through sub-workflow steps (its own, or those of the
    workflows they name) is refused, naming the path by slugs: `a -> b -> a`. The tenant's
    other workflows are read as they are now, with this one as it is about to be saved (its id
    and new slug); archived workflows never run, so they close no cycle. Run inside the saving
    transaction, so two saves that would close a cycle together cannot both pass."""
    serialize(session, f"workflows-graph:{tenant_id}")

    def is_saved(key: str) -> bool:
        return key == slug or (bool(saved_id) and key == saved_id)

    visited: set[str] = set()
    # (key named by a step, the path of slugs that led to it, the saved workflow's step)
    stack = [(key, [slug], step_id) for step_id, key in reversed(
        _sub_workflow_steps(message.steps))]
    while stack:
        key, path, first_step = stack.pop()
        if is_saved(key):
            route = " -> ".join([*path, slug])
            field = f"steps.{first_step}.sub_workflow.workflow_id"
            problem = f"step {first_step!r} makes the workflow call itself: {route}"
            raise InvalidArgument(f"invalid workflow: {problem}", reason="WORKFLOW_CYCLE",
                                  field_violations=[(field, problem)],
                                  details={"step": first_step, "path": route})
        row = find_workflow(session, tenant_id, key)
        # Not found: no edge (the step fails when it runs). The saved workflow found by its
        # old slug: after the save that slug names nothing.
        if row is None or row.id in visited or row.id == saved_id or \
                row.status == "WORKFLOW_STATUS_ARCHIVED":
            continue
        visited.add(row.id)
        steps = defn.workflow_from_json(row.definition).steps
        for _, target in reversed(_sub_workflow_steps(steps)):
            stack.append((target, [*path, row.slug], first_step))


# ---- schedules -----------------------------------------------------------------------------

def _smallest_step(values: list, unit: int) -> int | None:
    """The smallest distance between two allowed values of one cron field, in `unit`s."""
    if values == ["*"]:
        return unit
    ordered = sorted(int(v) for v in values)
    if len(ordered) < 2:
        return None
    return unit * min(b - a for a, b in zip(ordered, ordered[1:]))


def shortest_interval(cron: str, timezone: str) -> float:
    """The shortest time between two fires of a cron (5 fields, or 6 with seconds first): the
    closest two values of its finest field with more than one (within a minute, an hour or a
    day), and the gaps seen over its next 50 fires (which catches fires across a boundary,
    such as seconds 59 and 0 of consecutive minutes)."""
    from zoneinfo import ZoneInfo

    from croniter import croniter

    parsed = croniter(cron, second_at_beginning=True)
    expanded = parsed.expanded
    seconds = expanded[5] if len(expanded) > 5 else [0]
    shortest = float(24 * 3600)
    for values, unit in ((seconds, 1), (expanded[0], 60), (expanded[1], 3600)):
        step = _smallest_step(values, unit)
        if step is not None:
            shortest = float(step)
            break
    fires = croniter(cron, datetime.now(ZoneInfo(timezone)), second_at_beginning=True)
    previous = fires.get_next(datetime)
    for _ in range(50):
        following = fires.get_next(datetime)
        shortest = min(shortest, (following.astimezone(UTC) - previous.astimezone(UTC))
                       .total_seconds())
        previous = following
        if shortest < 1:
            break
    return shortest


def check_cron_interval(cron: str, timezone: str, settings: Settings) -> None:
    """A cron firing more often than the floor is a 400 on `cron` (SCHEDULE_TOO_FREQUENT)."""
    floor = settings.schedule_min_interval_seconds
    interval = shortest_interval(cron, timezone)
    if interval < floor:
        problem = (f"fires every {interval:g}s at the shortest; schedules may fire at most "
                   f"once every {floor:g}s")
        raise InvalidArgument(f"cron: {problem}", reason="SCHEDULE_TOO_FREQUENT",
                              field_violations=[("cron", problem)],
                              details={"min_interval_seconds": floor,
                                       "interval_seconds": interval})


def check_schedule_quota(session: Session, tenant_id: str, settings: Settings) -> None:
    """429 SCHEDULE_QUOTA_EXCEEDED for a tenant at its number of schedules. In the creating
    transaction, serialized per tenant."""
    serialize(session, f"workflows-schedules:{tenant_id}")
    limit = settings.tenant_max_schedules
    count = session.exec(select(func.count()).select_from(ScheduleRow).where(
        ScheduleRow.tenant_id == tenant_id)).one()
    if count >= limit:
        raise ResourceExhausted(f"the tenant has {count} schedules, its limit",
                                reason="SCHEDULE_QUOTA_EXCEEDED",
                                details={"limit": limit, "schedules": count})


# ---- executions ----------------------------------------------------------------------------

def live_executions(session: Session, tenant_id: str) -> int:
    return session.execute(_LIVE_COUNT, {"tenant_id": tenant_id}).scalar_one()


# Built once (every start asks): building a statement cost more than running it.
_LIVE_COUNT = sa.select(func.count()).select_from(ExecutionRow).where(
    ExecutionRow.tenant_id == sa.bindparam("tenant_id"), ExecutionRow.status.in_(LIVE))


def live_counting(db: Database, tenant_id: str) -> tuple[str, tuple]:
    """`live_executions` as a statement for `Database.fetch` (one row, one count)."""
    p = db.placeholder
    return (f'SELECT count(*) FROM "{ExecutionRow.__tablename__}" WHERE "tenant_id" = {p} '
            f'AND "status" IN ({", ".join([p] * len(LIVE))})', (tenant_id, *LIVE))


def check_execution_quota(session: Session, tenant_id: str, settings: Settings) -> None:
    """429 EXECUTION_QUOTA_EXCEEDED when the tenant already has its limit of executions queued,
    running or waiting for approval. In the transaction that inserts the next one, serialized
    per tenant, so concurrent starts cannot pass the limit together."""
    serialize(session, f"workflows-quota:{tenant_id}")
    limit = settings.tenant_max_live_executions
    live = live_executions(session, tenant_id)
    if live >= limit:
        raise ResourceExhausted(
            f"the tenant has {live} executions queued or running, its limit; wait for some to "
            f"end or cancel them", reason=QUOTA_EXCEEDED, details={"limit": limit, "live": live})


def check_child(session: Session, parent: ExecutionRow, settings: Settings) -> tuple[str, int]:
    """The root and depth of a new child of `parent`; LimitReached when starting it would
    break the depth, the tree's size or the tenant's execution quota. In the transaction that
    inserts the child."""
    depth = parent.depth + 1
    root = parent.root_execution_id or parent.id
    if depth > settings.workflow_max_depth:
        raise LimitReached(DEPTH_EXCEEDED, (
            f"a child of execution {parent.id} would be {depth} sub-workflows deep; the limit "
            f"is {settings.workflow_max_depth} (AGENTMESH_WORKFLOW_MAX_DEPTH)"))
    serialize(session, f"workflows-tree:{root}")
    descendants = session.exec(select(func.count()).select_from(ExecutionRow).where(
        ExecutionRow.root_execution_id == root)).one()
    if descendants >= settings.workflow_max_descendants:
        raise LimitReached(FANOUT_EXCEEDED, (
            f"execution {root} has started {descendants} sub-workflow executions, its limit "
            f"(AGENTMESH_WORKFLOW_MAX_DESCENDANTS)"))
    try:
        check_execution_quota(session, parent.tenant_id, settings)
    except ResourceExhausted as exc:
        raise LimitReached(QUOTA_EXCEEDED, exc.message) from None
    return root, depth


class LimitReached(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def schedule_may_fire(session: Session, schedule: ScheduleRow, scheduled_at: datetime,
                      settings: Settings) -> str:
    """Why a schedule's fire starts nothing ("" when it may start an execution): its previous
    execution is still queued or running (fires never overlap), the tenant is at its execution
    quota, or the fire comes sooner after the last than the floor (a schedule saved before the
    floor existed)."""
    floor = settings.schedule_min_interval_seconds
    last = aware(schedule.last_fired_at)
    if last is not None and (aware(scheduled_at) - last).total_seconds() < floor - 0.5:
        return "TOO_FREQUENT"
    running = session.exec(select(ExecutionRow.id).where(
        ExecutionRow.tenant_id == schedule.tenant_id, ExecutionRow.status.in_(LIVE),
        ExecutionRow.schedule_id == schedule.id).limit(1)).first()
    if running is not None:
        return "PREVIOUS_RUN_NOT_ENDED"
    if live_executions(session, schedule.tenant_id) >= settings.tenant_max_live_executions:
        return QUOTA_EXCEEDED
    return ""

