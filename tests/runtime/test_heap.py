"""mesh.runtime.server.settle_heap: what start-up made is frozen out of the collector's reach,
so a full collection while serving no longer walks it."""

from __future__ import annotations

import gc

from mesh.runtime.server import settle_heap


def test_start_up_objects_are_frozen_and_a_full_collection_skips_them():
    made_at_start = [{"n": n} for n in range(50_000)]   # lives as long as the process
    walked: list[int] = []

    def count(phase, info):
        if phase == "start" and info["generation"] == 2:
            walked.append(len(gc.get_objects(generation=2)))
    before = gc.get_freeze_count()
    settle_heap()
    try:
        assert gc.get_freeze_count() >= before + len(made_at_start)
        gc.callbacks.append(count)
        try:
            gc.collect()
        finally:
            gc.callbacks.remove(count)
        assert walked and walked[0] < len(made_at_start)  # the frozen ones are not in it
    finally:
        gc.unfreeze()
    assert made_at_start[-1] == {"n": 49_999}
