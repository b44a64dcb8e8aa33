"""Structured JSON logs; every record carries the correlation id of the call it belongs to."""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter

from mesh.runtime.context import correlation_id, current_service


class _CorrelationFilter(logging.Filter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.correlation_id = correlation_id()
        record.service = current_service.get() or self.service
        return True


def configure(service: str, level: str = "INFO", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(service)s %(correlation_id)s",
            rename_fields={"asctime": "timestamp", "levelname": "level"}))
    else:
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s [%(service)s %(correlation_id)s] %(message)s"))
    handler.addFilter(_CorrelationFilter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class LogShipper(logging.Handler):
    """Ships log records to the observability service (`IngestLogs`), batched, best effort:
    records wait in a bounded buffer (the oldest are dropped when it is full, and counted) and
    leave every half second, so logging never blocks or fails a call."""

    def __init__(self, peers, capacity: int = 10_000, level: int = logging.INFO) -> None:
        super().__init__(level)
        import collections

        self.peers = peers
        self.buffer: collections.deque = collections.deque(maxlen=capacity)
        self.dropped = 0
        self._task = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(("grpc", "mesh.logs")):
            return
        if len(self.buffer) == self.buffer.maxlen:
            self.dropped += 1
        from mesh.runtime.context import TENANT_HEADER, current_call, metadata_value
        from mesh.runtime.telemetry import current_traceparent

        context = current_call.get()
        traceparent = current_traceparent.get()
        self.buffer.append((record.created, record.levelname, current_service.get() or "",
                            record.getMessage()[:8000], correlation_id(),
                            traceparent.split("-")[1] if traceparent else "",
                            metadata_value(context, TENANT_HEADER) if context is not None else "",
                            record.name))

    def start(self) -> None:
        import asyncio

        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        import asyncio

        while True:
            await asyncio.sleep(0.5)
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
    shipper = LogShipper(peers, level=logging.getLevelName(level.upper()))
    logging.getLogger().addHandler(shipper)
    shipper.start()
    return shipper
