"""The sandbox (mesh.runtime.sandbox): tasks run in worker processes; the deadline kills them
while the event loop keeps serving; inputs, results, nesting and memory are capped; one tenant
cannot hold every worker."""

from __future__ import annotations

import asyncio
import time

import pytest

from mesh.runtime import sandbox
from mesh.runtime.sandbox import Limits, Sandbox, SandboxError, SandboxLimit, SandboxTimeout
from mesh.tools.builtins import BuiltinError
from mesh.workflows.expressions import ExpressionError

MATH = "mesh.tools.builtins:run"
EVALUATE = "mesh.workflows.expressions:evaluate"
BOMB = "length(inputs.x" + ".[@,@][]" * 22 + ")"


def _run(coroutine):
    return asyncio.run(coroutine)


async def _with_pool(limits: Limits, body):
    pool = Sandbox(limits)
    try:
        return await body(pool)
    finally:
        await pool.close()


def test_results_and_declared_errors_come_back():
    async def body(pool: Sandbox):
        assert await pool.run(MATH, "math", {"expression": "6 * 7"}, {}) == {"result": 42}
        with pytest.raises(BuiltinError, match="unknown name"):
            await pool.run(MATH, "math", {"expression": "y"}, {})
        with pytest.raises(ExpressionError):
            await pool.run(EVALUATE, "inputs.[", {}, 1000)
        with pytest.raises(SandboxError):  # not declared passable: the generic error
            await pool.run("mesh.tools.builtins:_evaluate", None, {})
        with pytest.raises(ValueError):
            await pool.run("os:system", "true")
        assert pool.stats()["started"] == 1  # one worker served them all
    _run(_with_pool(Limits(), body))


def test_the_deadline_kills_the_worker_while_the_loop_keeps_serving():
    async def body(pool: Sandbox):
        gaps = []

        async def ticker():
            last = time.perf_counter()
            while True:
                await asyncio.sleep(0.01)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        await pool.run(EVALUATE, "inputs.x", {"inputs": {"x": 1}}, 1000)  # started, warm
        ticking = asyncio.create_task(ticker())
        started = time.monotonic()
        with pytest.raises(SandboxTimeout):
            await pool.run(EVALUATE, BOMB, {"inputs": {"x": [1, 2, 3]}}, 1000, timeout=1)
        took = time.monotonic() - started
        ticking.cancel()
        assert 0.9 < took < 2.5, took
        assert max(gaps) < 0.2, max(gaps)  # the loop was never held
        assert pool.stats()["killed"] == 1
        # A new worker takes the next task.
        assert await pool.run(EVALUATE, "inputs.x", {"inputs": {"x": 2}}, 1000) == 2
        assert pool.stats()["started"] == 2
    _run(_with_pool(Limits(), body))


def test_a_cancelled_caller_kills_its_worker():
    async def body(pool: Sandbox):
        await pool.run(EVALUATE, "inputs.x", {"inputs": {"x": 1}}, 1000)
        worker = pool._idle[0]
        with pytest.raises(TimeoutError):  # a step's own wait_for cancels the call
            await asyncio.wait_for(pool.run(EVALUATE, BOMB, {"inputs": {"x": [1]}}, 1000,
                                            timeout=30), 0.5)
        await asyncio.wait_for(worker.process.wait(), 5)
        assert worker.process.returncode is not None and pool.stats()["killed"] == 1
    _run(_with_pool(Limits(), body))


def test_inputs_results_nesting_and_memory_are_capped():
    async def body(pool: Sandbox):
        with pytest.raises(SandboxLimit, match="input"):
            await pool.run(EVALUATE, "inputs", {"inputs": "x" * 5000}, 1000)
        with pytest.raises(SandboxLimit, match="result"):
            await pool.run(EVALUATE, "inputs.x" + ".[@,@][]" * 8, {"inputs": {"x": ["y" * 20]}},
                           1000)
        deep = "inputs.x" + " | [@]" * 70
        with pytest.raises(SandboxLimit, match="nested"):
            await pool.run(EVALUATE, deep, {"inputs": {"x": 1}}, 1000)
        with pytest.raises(SandboxLimit, match="memory"):
            await pool.run(EVALUATE, "length(inputs.x" + ".[@,@][]" * 24 + ")",
                           {"inputs": {"x": list(range(100))}}, 1000, timeout=60)
        assert await pool.run(EVALUATE, "inputs.x", {"inputs": {"x": 3}}, 1000) == 3
    _run(_with_pool(Limits(max_input_bytes=4096, max_result_bytes=2048, memory_mb=300), body))


def test_one_tenant_cannot_hold_every_worker():
    async def body(pool: Sandbox):
        slow = [asyncio.create_task(pool.run(EVALUATE, BOMB, {"inputs": {"x": [1]}}, 1000,
                                             timeout=3, tenant="greedy")) for _ in range(2)]
        await asyncio.sleep(0.5)
        started = time.monotonic()
        assert await pool.run(EVALUATE, "inputs.x", {"inputs": {"x": 1}}, 1000,
                              tenant="other") == 1
        assert time.monotonic() - started < 2  # a worker was free for the other tenant
        results = await asyncio.gather(*slow, return_exceptions=True)
        # The greedy tenant's second call waited for its first: both ended at the deadline.
        assert all(isinstance(r, SandboxTimeout) for r in results), results
    _run(_with_pool(Limits(workers=2, workers_per_tenant=1), body))


def test_the_module_pool_is_lazy_and_shut_down():
    async def body():
        assert sandbox._pools.get(id(asyncio.get_running_loop())) is None
        assert await sandbox.run(MATH, "math", {"expression": "1 + 1"}, {}) == {"result": 2}
        assert sandbox.pool().stats()["started"] == 1
        await sandbox.shutdown()
        assert sandbox._pools.get(id(asyncio.get_running_loop())) is None
    _run(body())
