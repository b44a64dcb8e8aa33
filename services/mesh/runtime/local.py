"""Calls between services served by the same process, without the network in between.

`agentmesh up` serves every service in one process (`serve_many`), each behind its own gRPC
server and port, and the services call each other through `mesh.runtime.peers`. Through gRPC on
loopback, one unary call cost ~0.9 ms of CPU on a two-core VM, about ten times the work of a
governance decision behind it (docs/budgets.md); a workflow execution makes four of them and an
agent's first token waits for two. A call to a service this process serves at the very address
the peer list names (`hosted`) is made here instead: the request is serialized and read back by
the service's own deserializer (the two sides never share a message object), the service's
wrapped handler (`mesh.runtime.server.method_handlers`: guards, the internal token, error
mapping, spans) runs as a task of its own in an empty context (nothing of the caller's context
leaks into it, as over the wire), under the call's deadline, and its answer or its status comes
back as gRPC's client would give it: the message read by the stub's deserializer, or a
`grpc.aio.AioRpcError` with the same code, details and trailers (the error envelope,
`grpc-status-details-bin`).

What is not made here goes over gRPC as before: streaming calls, methods the service does not
list (health), services served elsewhere (another process, replicas behind one name), and every
call when `AGENTMESH_LOCAL_CALLS=false`.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc

# (service, the address it is served at) -> (the event loop serving it, {method path: handler})
Methods = dict[str, grpc.RpcMethodHandler]
_HOSTED: dict[tuple[str, str], tuple[asyncio.AbstractEventLoop, Methods]] = {}
# The address of a service this process serves -> {name: (its loop, what takes the items)}:
# what a service takes from this process's own runtime without a call ("spans": the SDK's spans
# for the trace receiver; "audit": forwarded audit events, as dicts, for the audit trail).
Receiver = Callable[[Sequence[Any]], Awaitable[Any]]
_RECEIVERS: dict[str, dict[str, tuple[asyncio.AbstractEventLoop, Receiver]]] = {}


def host(service: str, address: str, methods: Methods,
         receivers: dict[str, Receiver] | None = None) -> None:
    """`service` is served by this process at `address` (host:port), on the running event
    loop, with these unary handlers (and what it takes without a call, `receivers`), from
    now on."""
    loop = asyncio.get_running_loop()
    _HOSTED[(service, address)] = (loop, methods)
    if receivers:
        _RECEIVERS[address] = {name: (loop, take) for name, take in receivers.items()}


def unhost(service: str, address: str) -> None:
    """`service` stops being served at `address`: calls to it go over the network (and fail
    as they would)."""
    if _HOSTED.pop((service, address), None) is not None:
        _RECEIVERS.pop(address, None)


def receiver(address: str, name: str) -> tuple[asyncio.AbstractEventLoop, Receiver] | None:
    """What the service this process serves at `address` (host:port) takes as `name`, with its
    loop, or None when not served here: the span exporter hands the trace receiver the SDK's
    spans as they are (mesh.runtime.telemetry), where OTLP's encoding and decoding cost more
    than making the spans; the audit forwarder hands the audit trail its events as dicts
    (mesh.runtime.audit), where Structs both ways cost more than storing them."""
    return _RECEIVERS.get(address, {}).get(name)


def hosted(service: str, address: str) -> Methods | None:
    """The handlers of `service` when this process serves it at `address` on the event loop
    that asks (a handler runs on its own loop: test harnesses run services on loops of their
    own); else None."""
    served = _HOSTED.get((service, address))
    if served is None:
        return None
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        return None
    return served[1] if served[0] is running else None


class _Aborted(grpc.aio.AbortError):
    """How `abort` leaves a handler here: the status rides on it to the caller."""


class LocalContext:
    """What a handler reads of its call (the part of `grpc.aio.ServicerContext` the services
    use): the caller's metadata, the deadline, and the status it aborts with."""

    def __init__(self, metadata: Sequence[tuple[str, Any]], deadline: float | None) -> None:
        self._metadata = tuple(metadata)
        self._deadline = deadline
        self._code: grpc.StatusCode | None = None
        self._details = ""
        self._trailing: tuple[tuple[str, Any], ...] = ()
        self._initial: tuple[tuple[str, Any], ...] = ()
        self._cancelled = False

    def invocation_metadata(self) -> tuple[tuple[str, Any], ...]:
        return self._metadata

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def peer(self) -> str:
        return "local"

    def auth_context(self) -> dict:
        return {}

    def cancelled(self) -> bool:
        return self._cancelled

    def done(self) -> bool:
        return self._cancelled

    async def send_initial_metadata(self, metadata: Sequence[tuple[str, Any]]) -> None:
        self._initial = tuple(metadata)

    def set_trailing_metadata(self, metadata: Sequence[tuple[str, Any]]) -> None:
        self._trailing = tuple(metadata)

    def trailing_metadata(self) -> tuple[tuple[str, Any], ...]:
        return self._trailing

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode | None:
        return self._code

    def set_details(self, details: str) -> None:
        self._details = details

    def details(self) -> str:
        return self._details

    def set_compression(self, compression: Any) -> None:
        pass

    def disable_next_message_compression(self) -> None:
        pass

    async def abort(self, code: grpc.StatusCode, details: str = "",
                    trailing_metadata: Sequence[tuple[str, Any]] = ()) -> None:
        if code == grpc.StatusCode.OK:  # as grpc.aio refuses it
            code = grpc.StatusCode.UNKNOWN
        self._code, self._details = code, details
        if trailing_metadata:
            self._trailing = tuple(trailing_metadata)
        raise _Aborted(details)

    async def abort_with_status(self, status: grpc.Status) -> None:
        await self.abort(status.code, status.details, status.trailing_metadata)

    def error(self) -> grpc.aio.AioRpcError:
        return grpc.aio.AioRpcError(self._code or grpc.StatusCode.UNKNOWN,
                                    grpc.aio.Metadata(*self._initial),
                                    grpc.aio.Metadata(*self._trailing), self._details)


class _LocalCall:
    """The caller's side of one local call: awaited for the response, as grpc.aio's call is.
    Run in the awaiting task (a task of its own only when asked for its status first)."""

    def __init__(self, coroutine, context: LocalContext) -> None:
        self._coroutine = coroutine
        self._context = context
        self._task: asyncio.Task | None = None
        self._awaited = False
        self._error: BaseException | None = None

    def __await__(self):
        if self._task is not None:
            return (yield from self._task.__await__())
        self._awaited = True
        try:
            return (yield from self._coroutine.__await__())
        except BaseException as exc:
            self._error = exc
            raise

    def cancel(self) -> bool:
        return self._task.cancel() if self._task is not None else False

    def done(self) -> bool:
        return self._task.done() if self._task is not None else self._awaited

    async def _ended(self) -> None:
        if self._awaited:
            return
        if self._task is None:
            self._task = asyncio.ensure_future(self._coroutine)
        await asyncio.wait([self._task])

    async def initial_metadata(self) -> grpc.aio.Metadata:
        await self._ended()
        return grpc.aio.Metadata(*self._context._initial)

    async def trailing_metadata(self) -> grpc.aio.Metadata:
        await self._ended()
        return grpc.aio.Metadata(*self._context._trailing)

    async def code(self) -> grpc.StatusCode:
        await self._ended()
        if self._task is not None:
            if self._task.cancelled():
                return grpc.StatusCode.CANCELLED
            error = self._task.exception()
        else:
            error = self._error
        if isinstance(error, asyncio.CancelledError):
            return grpc.StatusCode.CANCELLED
        return error.code() if isinstance(error, grpc.aio.AioRpcError) else grpc.StatusCode.OK


class _LocalUnaryUnary:
    """A unary method of a service hosted here, as a stub calls it."""

    def __init__(self, path: str, handler: grpc.RpcMethodHandler,
                 request_serializer: Callable | None, response_deserializer: Callable | None,
                 metadata: Callable[[Sequence[tuple[str, Any]]], list[tuple[str, Any]]],
                 deadline: Callable[[str, float | None], float]) -> None:
        self.path = path
        self.handler = handler
        self.serialize = request_serializer or (lambda message: message)
        self.deserialize = response_deserializer or (lambda data: data)
        self.metadata = metadata
        self.deadline = deadline

    def __call__(self, request, *, timeout: float | None = None,
                 metadata: Sequence[tuple[str, Any]] | None = None, credentials=None,
                 wait_for_ready=None, compression=None) -> _LocalCall:
        # The caller's identity and deadline are read now, in the caller's context.
        seconds = self.deadline(self.path, timeout)
        context = LocalContext(self.metadata(metadata or ()), time.monotonic() + seconds)
        return _LocalCall(self._invoke(request, context, seconds), context)

    async def _invoke(self, request, context: LocalContext, seconds: float):
        handler = self.handler
        served_request = handler.request_deserializer(self.serialize(request))
        # Its own task in an empty context: the handler sees only what the wire would carry.
        task = asyncio.get_running_loop().create_task(
            handler.unary_unary(served_request, context), context=contextvars.Context())
        try:
            async with asyncio.timeout(seconds):
                response = await task
        except TimeoutError:
            context._cancelled = True
            raise grpc.aio.AioRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, grpc.aio.Metadata(),
                                       grpc.aio.Metadata(), "Deadline Exceeded") from None
        except grpc.aio.AbortError:
            raise context.error() from None
        except asyncio.CancelledError:
            context._cancelled = True
            raise
        except Exception as exc:  # noqa: BLE001 - what gRPC's server would answer
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.UNKNOWN, grpc.aio.Metadata(), grpc.aio.Metadata(),
                f"Unexpected <class '{type(exc).__name__}'>: {exc}") from None
        if context._code not in (None, grpc.StatusCode.OK):
            raise context.error()
        return self.deserialize(handler.response_serializer(response))


class LocalChannel:
    """The channel `Peers` gives for a service this process serves: its unary methods are
    called here, anything else on `network` (a real channel, made when first needed)."""

    def __init__(self, methods: Methods,
                 network: Callable[[], grpc.aio.Channel],
                 metadata: Callable[[Sequence[tuple[str, Any]]], list[tuple[str, Any]]],
                 deadline: Callable[[str, float | None], float]) -> None:
        self.methods = methods
        self._network = network
        self._channel: grpc.aio.Channel | None = None
        self.metadata = metadata
        self.deadline = deadline

    @property
    def network(self) -> grpc.aio.Channel:
        if self._channel is None:
            self._channel = self._network()
        return self._channel

    def unary_unary(self, method: str, request_serializer=None, response_deserializer=None,
                    _registered_method: bool | None = False):
        handler = self.methods.get(method)
        if handler is None:
            return self.network.unary_unary(method, request_serializer, response_deserializer)
        return _LocalUnaryUnary(method, handler, request_serializer, response_deserializer,
                                self.metadata, self.deadline)

    def unary_stream(self, method: str, request_serializer=None, response_deserializer=None,
                     _registered_method: bool | None = False):
        return self.network.unary_stream(method, request_serializer, response_deserializer)

    def stream_unary(self, method: str, request_serializer=None, response_deserializer=None,
                     _registered_method: bool | None = False):
        return self.network.stream_unary(method, request_serializer, response_deserializer)

    def stream_stream(self, method: str, request_serializer=None, response_deserializer=None,
                      _registered_method: bool | None = False):
        return self.network.stream_stream(method, request_serializer, response_deserializer)

    async def channel_ready(self) -> None:
        await self.network.channel_ready()

    def get_state(self, try_to_connect: bool = False):
        return self.network.get_state(try_to_connect)

    async def close(self, grace: float | None = None) -> None:
        """Nothing to close: the network channel is its maker's (`Peers`), closed there."""
