"""Untrusted computation in worker processes, under a deadline that can stop it.

A tenant's tool call, JMESPath expression or template can be written to burn CPU (`9**1000`
raised twice more, `[@,@][]` repeated twenty times). Run on the event loop that serves every
tenant's requests, such a computation stalls all of them, and `asyncio.wait_for` cannot stop it:
a timeout only fires when the loop gets control back. So it runs here instead:

    result = await sandbox.run("mesh.tools.builtins:run", name, arguments, config,
                               timeout=10, tenant=tenant_id)

* A small pool of worker processes (`AGENTMESH_SANDBOX_WORKERS`, 2 by default), started on
  first use with a fresh interpreter (`python -m mesh.runtime.sandbox_worker`: no fork of the services
  process, whose gRPC threads and database pools must not be copied). A worker imports only
  what its tasks need (the standard library, jmespath, jinja2): about 15-20 MB each.
* The deadline covers waiting for a worker and running. When it passes, or the caller is
  cancelled (a step's `timeout`), the worker is killed (SIGKILL) and a new one is started for the
  next call: nothing is left running on behalf of a caller that gave up.
* One tenant holds at most `AGENTMESH_SANDBOX_WORKERS_PER_TENANT` workers at once (1 by
  default), so another tenant's call finds a free worker even while one tenant's calls all run
  to their deadline.
* Inputs and results travel as JSON, each capped (`AGENTMESH_SANDBOX_MAX_INPUT_BYTES`,
  `..._MAX_RESULT_BYTES`), results nested at most `MAX_NESTING` deep; a worker's address space
  is capped (`AGENTMESH_SANDBOX_MEMORY_MB`), so a computation that allocates without bound ends
  with `SandboxLimit` instead of swapping the host. Workers run at a lower CPU priority
  (nice 10) than the services process, so a busy worker yields the CPU to request handling.

A task is a `module:function` of the `mesh` package, called with the JSON arguments. An
exception a task raises comes back as the same class when the class is marked `@passable` (for
example `BuiltinError`, `ExpressionError`, `PlaceholderError`), else as `SandboxError`.

The worker's side is `mesh.runtime.sandbox_worker`, which imports only the standard library
(not even asyncio), so a worker starts at about 10 MB plus what its tasks import.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import time
from dataclasses import dataclass
from typing import Any

from mesh.runtime.sandbox_worker import (_HEADER, _PASSABLE, MAX_NESTING,  # noqa: F401
                                         SandboxError, SandboxLimit, passable)

log = logging.getLogger("mesh.runtime.sandbox")

_START_TIMEOUT = 30.0  # seconds a new worker may take to import and answer its first call


class SandboxTimeout(TimeoutError):
    """The deadline passed; the worker running the task was killed."""


@dataclass(frozen=True)
class Limits:
    workers: int = 2
    workers_per_tenant: int = 1
    max_input_bytes: int = 16 * 1024 * 1024
    max_result_bytes: int = 4 * 1024 * 1024
    memory_mb: int = 1024
    default_timeout: float = 10.0

    @classmethod
    def from_settings(cls, settings) -> "Limits":
        return cls(workers=settings.sandbox_workers,
                   workers_per_tenant=settings.sandbox_workers_per_tenant,
                   max_input_bytes=settings.sandbox_max_input_bytes,
                   max_result_bytes=settings.sandbox_max_result_bytes,
                   memory_mb=settings.sandbox_memory_mb,
                   default_timeout=settings.sandbox_timeout_seconds)


# ---- the parent's side ---------------------------------------------------------------------------
class _Worker:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.warm: set[str] = set()
        self.reaping: asyncio.Task | None = None

    @classmethod
    async def start(cls, limits: Limits) -> "_Worker":
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mesh.runtime.sandbox_worker", str(limits.memory_mb),
            str(limits.max_result_bytes), stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=None, start_new_session=True)
        return cls(process)

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    async def call(self, frame: bytes, max_result: int) -> dict:
        stdin, stdout = self.process.stdin, self.process.stdout
        stdin.write(_HEADER.pack(len(frame)) + frame)
        await stdin.drain()
        (size,) = _HEADER.unpack(await stdout.readexactly(_HEADER.size))
        if size > max_result + 4096:  # the worker checks it; this one does not trust it
            raise SandboxLimit(f"the result is larger than {max_result} bytes")
        return json.loads(await stdout.readexactly(size))

    def kill(self) -> None:
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
        # Reaped in the background (the pool's close waits for it).
        with contextlib.suppress(RuntimeError):
            self.reaping = asyncio.get_running_loop().create_task(self._reap())

    async def _reap(self) -> None:
        with contextlib.suppress(Exception):
            await self.process.wait()
        self.close_pipes()

    def close_pipes(self) -> None:
        # The subprocess transport otherwise closes when collected, maybe after its loop.
        transport = getattr(self.process, "_transport", None)
        if transport is not None:
            with contextlib.suppress(Exception):
                transport.close()


@dataclass
class _Share:
    """A tenant's workers in use (`slots`) and its calls waiting or running (`users`)."""

    slots: asyncio.Semaphore
    users: int = 0


class Sandbox:
    """The pool of one event loop (one services process)."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.loop = asyncio.get_running_loop()
        self._slots = asyncio.Semaphore(max(1, limits.workers))
        self._tenants: dict[str, _Share] = {}
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._dying: set[_Worker] = set()
        self.started = 0
        self.killed = 0

    async def run(self, task: str, *args: Any, timeout: float | None = None,
                  tenant: str = "") -> Any:
        if not task.startswith("mesh.") or ":" not in task:
            raise ValueError(f"not a sandbox task: {task!r}")
        frame = json.dumps({"task": task, "args": args}, separators=(",", ":")).encode()
        if len(frame) > self.limits.max_input_bytes:
            raise SandboxLimit(f"the input is larger than {self.limits.max_input_bytes} bytes")
        timeout = self.limits.default_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        share = self._tenants.get(tenant)
        if share is None:
            size = max(1, min(self.limits.workers_per_tenant, self.limits.workers))
            share = self._tenants[tenant] = _Share(asyncio.Semaphore(size))
        share.users += 1
        try:
            await self._acquire(share.slots, deadline, timeout)
            try:
                await self._acquire(self._slots, deadline, timeout)
                try:
                    return await self._run_on_worker(frame, deadline, timeout, task)
                finally:
                    self._slots.release()
            finally:
                share.slots.release()
        finally:
            share.users -= 1
            if not share.users:
                self._tenants.pop(tenant, None)

    @staticmethod
    async def _acquire(slots: asyncio.Semaphore, deadline: float, timeout: float) -> None:
        if not slots.locked():
            await slots.acquire()  # free: returns at once
            return
        try:
            await asyncio.wait_for(slots.acquire(), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            raise SandboxTimeout(f"no sandbox worker became free within {timeout:g}s") from None

    async def _run_on_worker(self, frame: bytes, deadline: float, timeout: float,
                             task: str) -> Any:
        worker = None
        while self._idle:
            candidate = self._idle.pop()
            if candidate.alive:
                worker = candidate
                break
        if worker is not None:
            self._busy.add(worker)
        answer: dict = {}
        clean = False
        try:
            if worker is None:
                worker = await _Worker.start(self.limits)
                self._busy.add(worker)
                self.started += 1
            if task not in worker.warm:
                # Starting an interpreter and importing the task's module is the platform's
                # cost, not the task's: it happens once per worker and module, outside the
                # deadline (within _START_TIMEOUT).
                started = time.monotonic()
                warm = json.dumps({"task": task, "warm": True}).encode()
                try:
                    answer = await asyncio.wait_for(
                        worker.call(warm, self.limits.max_result_bytes), _START_TIMEOUT)
                except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                    raise SandboxError("a sandbox worker did not start") from None
                if "ok" not in answer:
                    raise SandboxError((answer.get("error") or {}).get("message")
                                       or "a sandbox worker could not load its task")
                worker.warm.add(task)
                deadline += time.monotonic() - started
            try:
                answer = await asyncio.wait_for(worker.call(frame, self.limits.max_result_bytes),
                                                max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                log.warning("sandbox: %s passed its deadline of %gs; worker killed", task, timeout)
                raise SandboxTimeout(f"the computation took longer than {timeout:g}s") from None
            except (asyncio.IncompleteReadError, ConnectionError):
                raise SandboxError("the sandbox worker died") from None
            clean = True
        finally:
            if worker is not None:
                self._busy.discard(worker)
                if clean and worker.alive and not answer.get("restart"):
                    self._idle.append(worker)
                else:  # timed out, cancelled, died or asked to be replaced: never reused
                    self.killed += 1
                    worker.kill()
                    self._dying.add(worker)
                    if worker.reaping is not None:
                        worker.reaping.add_done_callback(lambda _, w=worker: self._dying.discard(w))
        if "ok" in answer:
            return answer["ok"]
        if "limit" in answer:
            raise SandboxLimit(answer["limit"])
        error = answer.get("error") or {}
        cls = _PASSABLE.get(error.get("type", ""))
        if cls is not None:
            raise cls(error.get("message", ""))
        raise SandboxError(error.get("message") or "the computation failed")

    async def close(self) -> None:
        workers = [*self._idle, *self._busy, *self._dying]
        self._idle.clear()
        for worker in workers:
            if worker.alive:
                with contextlib.suppress(ProcessLookupError):
                    worker.process.kill()
        for worker in workers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(worker.process.wait(), 5)
            worker.close_pipes()

    def stats(self) -> dict[str, int]:
        return {"idle": len(self._idle), "busy": len(self._busy), "started": self.started,
                "killed": self.killed}


_pools: dict[int, Sandbox] = {}
_limits: Limits | None = None


def configure(settings) -> None:
    """Sets the pool's limits from the process's settings (before its first use)."""
    global _limits
    _limits = Limits.from_settings(settings)


def limits() -> Limits:
    global _limits
    if _limits is None:
        from mesh.runtime.settings import get_settings

        _limits = Limits.from_settings(get_settings())
    return _limits


def pool() -> Sandbox:
    """The pool of the running event loop, made on first use (no process starts until a task
    runs)."""
    loop = asyncio.get_running_loop()
    found = _pools.get(id(loop))
    if found is None or found.loop is not loop:
        found = _pools[id(loop)] = Sandbox(limits())
    return found


async def run(task: str, *args: Any, timeout: float | None = None, tenant: str = "") -> Any:
    """Runs `task(*args)` in a worker; its JSON result. See the module's docstring."""
    return await pool().run(task, *args, timeout=timeout, tenant=tenant)


async def shutdown() -> None:
    """Kills the workers of the running loop's pool (the services process is stopping)."""
    loop = asyncio.get_running_loop()
    found = _pools.pop(id(loop), None)
    if found is not None:
        await found.close()
