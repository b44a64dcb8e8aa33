"""The event buses of mesh.runtime.events: the in-memory one of `agentmesh up` and NATS JetStream
(the real server on this machine), which lets several live replicas each see every event."""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest

from mesh.runtime import events

NATS_URL = os.environ.get("AGENTMESH_TEST_NATS_URL", "nats://127.0.0.1:4222")


async def _take(subscription: events.Subscription, count: int) -> list[events.Event]:
    taken = []
    async for event in subscription:
        taken.append(event)
        if len(taken) == count:
            break
    await subscription.close()
    return taken


def test_local_bus_replays_after_a_seq_for_one_tenant_only():
    async def scenario():
        bus = events.LocalBus(capacity=5)
        tenant, other = str(uuid.uuid4()), str(uuid.uuid4())
        for index in range(3):
            await bus.publish(tenant, "execution", "e1", "execution.progress", {"n": index})
            await bus.publish(other, "execution", "e1", "execution.progress", {"n": -1})
        replay = await _take(await bus.subscribe(tenant, "execution", None, 2), 2)
        assert [e.payload["n"] for e in replay] == [1, 2]
        assert all(e.tenant_id == tenant for e in replay)
        with pytest.raises(events.Gap):  # seq 1 has been pushed out of the ring of five
            await bus.subscribe(tenant, "execution", None, 0)
        live = asyncio.ensure_future(_take(await bus.subscribe(
            tenant, "execution", "e2", await bus.last_seq()), 1))
        await asyncio.sleep(0)
        await bus.publish(tenant, "execution", "e1", "execution.progress", {"n": 9})
        await bus.publish(tenant, "execution", "e2", "execution.progress", {"n": 10})
        assert [e.payload["n"] for e in await asyncio.wait_for(live, 5)] == [10]
    asyncio.run(scenario())


def test_subjects_refuse_wildcards():
    with pytest.raises(ValueError):
        events.subject("tenant.>", "execution", "x")
    with pytest.raises(ValueError):
        events.subject("t", "exec ution")


def test_nats_every_replica_sees_every_event_and_resumes_by_seq():
    async def scenario():
        publisher, replica_a, replica_b = (events.NatsBus(NATS_URL) for _ in range(3))
        tenant = str(uuid.uuid4())
        try:
            start = await replica_a.last_seq()
            subs = [await bus.subscribe(tenant, "call", None, start)
                    for bus in (replica_a, replica_b)]
            readers = [asyncio.ensure_future(_take(sub, 4)) for sub in subs]
            for index in range(4):
                await publisher.publish(tenant, "call", f"c{index}", "call.ended", {"n": index})
            await publisher.flush()
            seen = await asyncio.wait_for(asyncio.gather(*readers), 10)
            for taken in seen:
                assert [e.payload["n"] for e in taken] == [0, 1, 2, 3]
            seqs = [e.seq for e in seen[0]]
            assert seqs == [e.seq for e in seen[1]] and seqs == sorted(seqs)
            # A reconnect (to either replica) with the second seq gets the last two.
            resumed = await _take(await replica_b.subscribe(tenant, "call", None, seqs[1]), 2)
            assert [e.payload["n"] for e in resumed] == [2, 3]
        finally:
            for bus in (publisher, replica_a, replica_b):
                await bus.close()
    asyncio.run(scenario())
