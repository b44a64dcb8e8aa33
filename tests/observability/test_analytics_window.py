"""The range and buckets of an analytics request: defaults, the chosen width, the 400s."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agentmesh.observability.v1 import observability_pb2 as pb
from mesh.observability.analytics import window
from mesh.runtime.errors import InvalidArgument

END = datetime(2026, 3, 1, 12, 0, 30, tzinfo=UTC)


def _request(start=None, end=END, interval=None):
    request = pb.GetCallVolumeRequest()
    if start is not None:
        request.start_time.FromDatetime(start)
    if end is not None:
        request.end_time.FromDatetime(end)
    if interval is not None:
        request.interval.FromTimedelta(interval)
    return request


def test_default_is_the_last_day_in_at_most_100_buckets():
    span = window(_request())
    assert span.start == END - timedelta(hours=24) and span.end == END
    assert (span.interval, span.buckets) == (900, 96)


def test_given_interval_is_rounded_up_to_seconds():
    span = window(_request(END - timedelta(minutes=10), interval=timedelta(seconds=59.5)))
    assert (span.interval, span.buckets) == (60, 10)


def test_end_before_start_and_too_many_buckets_are_400():
    with pytest.raises(InvalidArgument) as caught:
        window(_request(END + timedelta(seconds=1)))
    assert "end_time" in str(caught.value)
    with pytest.raises(InvalidArgument):
        window(_request(interval=timedelta(seconds=60)))  # 1440 buckets in a day


def test_an_end_in_year_one_does_not_overflow():
    span = window(_request(end=datetime(1, 1, 1, 0, 0, 1, tzinfo=UTC)))
    assert span.start.year == 1 and span.buckets >= 0
