"""SQL helpers for aggregates over time (analytics): epoch seconds of a timestamp column, the
bucket a row falls in, nearest-rank percentiles by window functions — on SQLite and PostgreSQL.

    bucket = bucket_of(Row.started_at, start, 3600, dialect)     # 0, 1, 2, ... from `start`
    ranked = ranked(select(...), Row.duration_ms, partition=[...])  # row_number and count

Timestamps are stored in UTC (SQLite: as text, which `strftime('%s')` reads as UTC).
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa


def dialect_of(session) -> str:
    return session.get_bind().dialect.name


def epoch(column, dialect: str):
    """Seconds since 1970 of a timestamp column, as a number."""
    if dialect == "postgresql":
        return sa.extract("epoch", column)
    # julianday keeps the fraction of a second; strftime('%s') would drop it.
    return (sa.func.julianday(column) - 2440587.5) * 86400.0


def bucket_of(column, start: datetime, interval_seconds: int, dialect: str):
    """The index of the `interval_seconds`-wide bucket from `start` that `column` falls in."""
    offset = (epoch(column, dialect) - start.timestamp()) / float(interval_seconds)
    return sa.cast(sa.func.floor(offset), sa.Integer) if dialect == "postgresql" else \
        sa.cast(offset - (offset < 0), sa.Integer)  # SQLite: CAST truncates towards zero


def nearest_rank(value, position, count, p: float, where=None):
    """The p-th percentile (nearest rank) of `value` over a group, from each row's 1-based
    `position` in the group ordered by value and the group's `count`: the smallest value whose
    position is at least p * count. Use inside an aggregate over the group (a GROUP BY); `where` limits it to some rows
    (which must be ranked among themselves)."""
    condition = position >= p * count
    if where is not None:
        condition = sa.and_(where, condition)
    return sa.func.min(sa.case((condition, value), else_=None))
