"""The sandbox's worker process (`python -m mesh.runtime.sandbox_worker MEMORY_MB MAX_RESULT`):
reads framed JSON requests on stdin, runs each `module:function` of the `mesh` package, answers
framed JSON on stdout. See `mesh.runtime.sandbox` for the parent's side.

Only the standard library is imported here (no asyncio): a worker costs a bare interpreter plus
the modules of the tasks it has run. Task modules import `passable` from here for the same
reason.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import struct
import sys
from typing import Any

MAX_NESTING = 64  # levels of lists and objects in a result
_HEADER = struct.Struct(">I")
_NICE = 10


class SandboxError(Exception):
    """A task failed in a way its caller did not declare (`@passable`), or the worker died."""


class SandboxLimit(SandboxError):
    """An input or result past its cap, too deeply nested, or a worker out of memory."""


_PASSABLE: dict[str, type[Exception]] = {}


def passable(cls: type[Exception]) -> type[Exception]:
    """Marks an exception class a task may raise to its caller through the sandbox (its message
    is kept; it must accept the message as its only argument)."""
    _PASSABLE[f"{cls.__module__}:{cls.__qualname__}"] = cls
    return cls


def _depth_within(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            if depth > limit:
                return False
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            if depth > limit:
                return False
            stack.extend((v, depth + 1) for v in node)
    return True


def _resolve(task: str, cache: dict[str, Any]):
    function = cache.get(task)
    if function is None:
        module_name, _, name = task.partition(":")
        if not module_name.startswith("mesh."):
            raise SandboxError(f"not a sandbox task: {task!r}")
        function = cache[task] = getattr(importlib.import_module(module_name), name)
    return function


def _answer(request: dict, cache: dict[str, Any], max_result: int) -> dict:
    try:
        function = _resolve(request["task"], cache)
        if request.get("warm"):
            return {"ok": None}
        result = function(*request["args"])
        if not _depth_within(result, MAX_NESTING):
            return {"limit": f"the result is nested deeper than {MAX_NESTING} levels"}
        encoded = json.dumps({"ok": result}, separators=(",", ":"))
    except MemoryError:
        return {"limit": "the computation ran out of memory", "restart": True}
    except RecursionError:
        return {"limit": "the computation nested too deeply", "restart": True}
    except Exception as exc:  # noqa: BLE001 - the caller decides what it means
        cls = type(exc)
        return {"error": {"type": f"{cls.__module__}:{cls.__qualname__}",
                          "message": str(exc)[:4000]}}
    if len(encoded) > max_result:
        return {"limit": f"the result is larger than {max_result} bytes"}
    return {"raw": encoded}


def _read_exactly(stream, size: int) -> bytes | None:
    data = bytearray()
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


def _die_with_parent() -> None:
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _worker_main(argv: list[str]) -> None:
    memory_mb, max_result = int(argv[0]), int(argv[1])
    _die_with_parent()
    with contextlib.suppress(OSError):
        os.nice(_NICE)
    if memory_mb > 0:
        import resource

        cap = memory_mb * 1024 * 1024
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    requests = sys.stdin.buffer
    # Frames go to a private copy of stdout; anything a task prints goes to stderr instead.
    answers = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    cache: dict[str, Any] = {}
    while True:
        header = _read_exactly(requests, _HEADER.size)
        if header is None:
            return  # the parent closed the pipe: it is gone or shutting the pool down
        body = _read_exactly(requests, _HEADER.unpack(header)[0])
        if body is None:
            return
        answer = _answer(json.loads(body), cache, max_result)
        if "raw" in answer:
            payload = answer["raw"].encode()
        else:
            payload = json.dumps(answer, separators=(",", ":")).encode()
        answers.write(_HEADER.pack(len(payload)) + payload)
        if answer.get("restart"):
            return


if __name__ == "__main__":
    _worker_main(sys.argv[1:])
