"""Structured JSON logs; every record carries the correlation id of the call it belongs to and,
written during a traced call, the `trace_id` and `span_id` of its span (W3C hex, as in the
exported spans and the `x-trace-id` answer header), so a trace's log lines are found by id."""

from __future__ import annotations

import functools

import logging
import sys

from opentelemetry.trace import get_current_span
from pythonjsonlogger.json import JsonFormatter

from mesh.runtime import redaction
from mesh.runtime.context import correlation_id, current_service


# Levels applied at run time (`apply_levels`, from the runtime configuration): a default and
# overrides per service. The root logger is set to the most verbose of them; each handler then
# drops what is below the level of the record's service.
_default_level = logging.INFO
_service_levels: dict[str, int] = {}


def level_for(service: str) -> int:
    return _service_levels.get(service, _default_level)


def _number(level: str | int) -> int:
    if isinstance(level, int):
        return level
    number = logging.getLevelName(str(level).upper())
    if not isinstance(number, int):
        raise ValueError(f"unknown log level {level!r}")
    return number


def apply_levels(default: str | int, services: dict[str, str] | None = None) -> None:
    """Sets the process's log levels now: every logger, every handler (the stderr one and the
    shipper to observability)."""
    global _default_level, _service_levels
    _default_level = _number(default)
    _service_levels = {name: _number(level) for name, level in (services or {}).items()}
    lowest = min([_default_level, *_service_levels.values()])
    root = logging.getLogger()
    root.setLevel(lowest)
    for handler in root.handlers:
        handler.setLevel(lowest)


class _LevelFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= level_for(getattr(record, "service", "") or
                                           current_service.get())


@functools.cache
def version() -> str:
    """The installed package's version (read once: importlib.metadata scans the path)."""
    from importlib.metadata import PackageNotFoundError, version as package_version

    try:
        return package_version("agentmesh")
    except PackageNotFoundError:
        return "dev"


class _CorrelationFilter(logging.Filter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.correlation_id = correlation_id()
        record.service = current_service.get() or self.service
        # The current span (mesh.runtime.telemetry makes one current only for traced calls);
        # the JSON formatter writes these as fields, absent outside a traced call.
        span_context = get_current_span().get_span_context()
        if span_context.is_valid:
            record.trace_id = format(span_context.trace_id, "032x")
            record.span_id = format(span_context.span_id, "016x")
        return True


class _Masked(logging.Formatter):
    """The line another formatter makes, with the secrets this process read masked out
    (message, exception and all: `mesh.runtime.redaction`)."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return redaction.LOGS.text(self.inner.format(record))


def configure(service: str, level: str = "INFO", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_Masked(JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(service)s %(correlation_id)s",
            rename_fields={"asctime": "timestamp", "levelname": "level"})))
    else:
        handler.setFormatter(_Masked(logging.Formatter(
            "%(asctime)s %(levelname)s [%(service)s %(correlation_id)s] %(message)s")))
    # httpx logs every outbound request's full URL at INFO: a tool's URL may carry a secret or
    # a tenant's query token, and the request is recorded by whoever made it anyway.
    for name in ("httpx", "httpx2", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    handler.addFilter(_CorrelationFilter(service))
    handler.addFilter(_LevelFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    apply_levels(level)


class LogShipper(logging.Handler):
    """Ships log records to the observability service (`IngestLogs`), batched, best effort:
    records wait in a bounded buffer (the oldest are dropped when it is full, and counted) and
    leave half a second after the first of a batch, so logging never blocks or fails a call.
    With nothing logged the shipper sleeps (a timer twice a second was idle CPU of its own)."""

    def __init__(self, peers, capacity: int = 10_000, level: int = logging.INFO) -> None:
        super().__init__(level)
        import collections

        self.peers = peers
        self.buffer: collections.deque = collections.deque(maxlen=capacity)
        self.dropped = 0
        self._task = None
        self._loop = None
        self._waiting = None  # an asyncio.Event while the shipper sleeps for a first record

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(("grpc", "mesh.logs")) or \
                record.levelno < level_for(current_service.get()):
            return
        if len(self.buffer) == self.buffer.maxlen:
            self.dropped += 1
        from mesh.runtime.context import TENANT_HEADER, current_call, metadata_value

        context = current_call.get()
        span_context = get_current_span().get_span_context()
        self.buffer.append((record.created, record.levelname, current_service.get() or "",
                            redaction.LOGS.text(record.getMessage())[:8000], correlation_id(),
                            format(span_context.trace_id, "032x") if span_context.is_valid
                            else "",
                            metadata_value(context, TENANT_HEADER) if context is not None else "",
                            record.name))
        waiting = self._waiting
        if waiting is not None:  # records come from any thread: wake the loop's task safely
            self._waiting = None
            self._loop.call_soon_threadsafe(waiting.set)

    def start(self) -> None:
        import asyncio

        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run())

    async def _run(self) -> None:
        import asyncio

        while True:
            if not self.buffer:
                waiting = self._waiting = asyncio.Event()
                if not self.buffer:  # a record emitted before the event was set is not missed
                    await waiting.wait()
                self._waiting = None
            await asyncio.sleep(0.5)  # what else is logged meanwhile leaves in the same batch
            await self.flush_async()

    async def flush_async(self) -> None:
        if not self.buffer:
            return
        from datetime import UTC, datetime

        from agentmesh.observability.v1 import observability_pb2 as pb
        from agentmesh.observability.v1 import observability_pb2_grpc as pb_grpc

        batch = [self.buffer.popleft() for _ in range(min(len(self.buffer), 500))]
        entries = []
        for created, level, service, message, cid, trace_id, tenant, logger in batch:
            entry = pb.LogEntry(level=f"LOG_LEVEL_{level}" if level in (
                "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL") else "LOG_LEVEL_INFO",
                service=service, message=message, correlation_id=cid, trace_id=trace_id,
                tenant_id=tenant)
            entry.timestamp.FromDatetime(datetime.fromtimestamp(created, UTC))
            entry.attributes.update({"logger": logger})
            entries.append(entry)
        try:
            await self.peers.stub(pb_grpc.ObservabilityServiceStub).IngestLogs(
                pb.IngestLogsRequest(entries=entries), timeout=5)
        except Exception:  # noqa: BLE001 - observability down: the records are dropped
            self.dropped += len(entries)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.flush_async()


def ship_to_observability(peers, level: str = "INFO") -> LogShipper | None:
    """Adds a LogShipper to the root logger when the observability service has an address."""
    if "observability" not in peers.addresses:
        return None
    shipper = LogShipper(peers, level=min(logging.getLogger().level or logging.INFO,
                                              _number(level)))
    logging.getLogger().addHandler(shipper)
    shipper.start()
    return shipper
