"""Server-side CPU per call of tracing, isolated from the network (issue 24): why the runtime
makes its spans itself instead of using `opentelemetry-instrumentation-grpc`.

    .venv/bin/python bench/otel_grpc_interceptor.py [--calls 50000]

Four ways a gRPC handler can be traced, each timed over the same do-nothing handler:

- `runtime, unsampled`: what `mesh.runtime.server` does for a call whose `traceparent` is not
  sampled (one lookup, a string test; the metadata dict it builds anyway is counted);
- `instrumentation-grpc, unsampled`: the official aio server interceptor on the same call
  (`intercept_service` plus its wrapped handler, made anew per call), with a parent-based
  sampler that drops it;
- `runtime, sampled` and `instrumentation-grpc, sampled`: a sampled call, recorded into a
  batch processor whose exporter drops the spans (export cost is off the call's path).

CPU time (`time.process_time`) per call, best of three rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "gen"), str(ROOT / "services")]

import grpc  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import (BatchSpanProcessor, SpanExporter,  # noqa: E402
                                            SpanExportResult)
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased  # noqa: E402

TRACE = "0af7651916cd43dd8448eb211c80319c"
METHOD = "/agentmesh.agents.v1.AgentService/GetAgent"
Pair = collections.namedtuple("Pair", "key value")  # grpc.aio's metadata items
Details = collections.namedtuple("Details", "method invocation_metadata")


class Dropping(SpanExporter):
    def export(self, spans):
        return SpanExportResult.SUCCESS


class Context:
    def __init__(self, flags: str) -> None:
        self.metadata = (Pair("traceparent", f"00-{TRACE}-b7ad6b7169203331-{flags}"),
                         Pair("x-agentmesh-tenant-id", "t1"), Pair("user-agent", "grpc-c/1"))

    def invocation_metadata(self):
        return self.metadata

    def peer(self) -> str:
        return "ipv4:127.0.0.1:50123"


async def handler(request, context):
    return request


def runtime_call(tracing):
    async def call(request, context):
        metadata = dict(context.invocation_metadata() or ())
        if metadata.get("traceparent", "").endswith("-01"):
            span = tracing.start("agents", METHOD, metadata, metadata.get("x-agentmesh-tenant-id"))
            try:
                return await handler(request, context)
            finally:
                span.end(True)
        return await handler(request, context)
    return call


def instrumented_call(provider):
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    interceptor = aio_server_interceptor(tracer_provider=provider)
    wrapped = grpc.unary_unary_rpc_method_handler(handler)

    async def continuation(_):
        return wrapped

    async def call(request, context):
        details = Details(METHOD, context.invocation_metadata())
        next_handler = await interceptor.intercept_service(continuation, details)
        return await next_handler.unary_unary(request, context)
    return call


async def measure(call, context, calls: int) -> float:
    for _ in range(min(2000, calls)):
        await call(b"x", context)
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        for _ in range(calls):
            await call(b"x", context)
        best = min(best, (time.process_time() - started) / calls)
    return best * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=50000)
    args = parser.parse_args()
    import logging

    # The dropping exporter is slower to be called than the loop is to make spans: the SDK
    # says so ("Queue full") and drops some, which only lightens the sampled rows.
    logging.getLogger("opentelemetry").setLevel(logging.ERROR)
    from mesh.runtime.telemetry import Tracing

    processor_exporter = Dropping()
    tracing = Tracing("", exporter=processor_exporter, hosted=("agents",))
    provider = TracerProvider(sampler=ParentBased(ALWAYS_OFF))
    provider.add_span_processor(BatchSpanProcessor(Dropping()))
    rows = [("runtime, unsampled", runtime_call(tracing), "00"),
            ("instrumentation-grpc, unsampled", instrumented_call(provider), "00"),
            ("runtime, sampled", runtime_call(tracing), "01"),
            ("instrumentation-grpc, sampled", instrumented_call(provider), "01")]
    for label, call, flags in rows:
        micros = await measure(call, Context(flags), args.calls)
        print(f"{label:34s} {micros:7.2f} us CPU per call")
    tracing.shutdown()
    provider.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
