"""Traces with the OpenTelemetry SDK, configured by the standard `OTEL_*` variables, that cost
nothing when a call is not sampled.

**Who decides.** The gateway: Envoy's OpenTelemetry tracer samples a share of requests
(`AGENTMESH_TRACE_SAMPLE_PERCENT`, 1% by default: at 10% the spans cost ~0.1 ms of CPU per
request, measured with bench/lean_runtime.py) and passes `traceparent` and `tracestate` on. A
service makes a SERVER span only for a call whose `traceparent` says "sampled", as a child of
the caller's span; its calls to other services carry the new context on (`mesh.runtime.peers`).
An unsampled call pays one metadata lookup and a string test. That is why the runtime makes the
span itself, in the handler wrapper it builds once per method (`mesh.runtime.server`), and not
with `opentelemetry-instrumentation-grpc`: its interceptor costs ~22 us of CPU on every call,
sampled or not (bench/otel_grpc_interceptor.py). `OTEL_TRACES_SAMPLER` is honoured: unset it
means "follow the caller"; `always_off` turns spans off; any other sampler is asked about every
call (each then pays for a span), as the SDK documents it.

**Where spans go.** Through the SDK's OTLP/gRPC exporter (`opentelemetry-exporter-otlp-proto-
grpc`: batching, retries with backoff, TLS, gzip), which reads the standard variables:
`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (`http://host:4317`
plaintext, `https://` TLS), `..._HEADERS`, `..._COMPRESSION`, `..._TIMEOUT`, `..._CERTIFICATE`,
and `OTEL_BSP_*`. No endpoint, `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`: no
spans, no cost. `agentmesh up` points it at its observability service (any collector in
production). `AGENTMESH_OTEL_EXPORTER_OTLP_ENDPOINT` (host:port, plaintext) is still read, as a
deprecated alias, when no `OTEL_*` endpoint is set.

**Whose spans.** Every service is an OpenTelemetry service of its own (`service.name`
`agentmesh-agents`, `agentmesh-identity`, ...; `service.namespace` `agentmesh`), also when one
process hosts them all (`agentmesh up`): a TracerProvider per service, all sharing one batch
processor and exporter. `OTEL_SERVICE_NAME` names the service of a process that hosts one (a
pod); `OTEL_RESOURCE_ATTRIBUTES` adds to every resource.

**What a span says.** Server spans follow OpenTelemetry's RPC conventions: name
`agentmesh.agents.v1.AgentService/GetAgent`, `rpc.system`, `rpc.service`, `rpc.method`,
`rpc.grpc.status_code` (v1.37, the default); `OTEL_SEMCONV_STABILITY_OPT_IN=rpc` switches to
the newer `rpc.system.name`, `rpc.method` (fully qualified), `rpc.response.status_code`, and
`rpc/dup` sends both. A failed call has `error.type` and an `exception` event; status ERROR for
the codes the conventions call server errors. Model requests are CLIENT spans with the GenAI
conventions (`mesh.agents.model_client`). Log lines written during a traced call carry its
`trace_id` and `span_id` (`mesh.runtime.logs`).

**The internal token.** The observability service's receiver accepts spans only with the
platform's internal token (`mesh.runtime.internal`). The exporter adds it only when its endpoint
is that service's address in `AGENTMESH_PEERS`; any other collector gets just the headers of
`OTEL_EXPORTER_OTLP_HEADERS`, never the token.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from mesh.runtime.settings import Settings

log = logging.getLogger("mesh.telemetry")
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
SERVICE_NAMESPACE = "agentmesh"
# The traceparent of the span of the call being served, for calls it makes.
current_traceparent: contextvars.ContextVar[str] = contextvars.ContextVar("current_traceparent",
                                                                          default="")
DEPRECATED_ENDPOINT = "AGENTMESH_OTEL_EXPORTER_OTLP_ENDPOINT"
# Server errors by OpenTelemetry's gRPC conventions: only these make a server span's status ERROR.
_SERVER_ERRORS = {"UNKNOWN", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE",
                  "DATA_LOSS"}


def service_name(service: str) -> str:
    """The OpenTelemetry `service.name` of an Agent Mesh service."""
    return f"{SERVICE_NAMESPACE}-{service}"


def configured_endpoint(environ: Mapping[str, str] = os.environ, settings: Settings | None = None,
                        warn: bool = False) -> str:
    """The OTLP/gRPC endpoint traces go to, as a URL: the standard variables first, then the
    deprecated `AGENTMESH_OTEL_EXPORTER_OTLP_ENDPOINT` (host:port, plaintext). "" = none."""
    for name in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        if environ.get(name, "").strip():
            return environ[name].strip()
    legacy = (settings.otel_exporter_otlp_endpoint if settings is not None
              else environ.get(DEPRECATED_ENDPOINT, "")).strip()
    if not legacy:
        return ""
    if warn:
        log.warning("%s is deprecated and will be removed in the next release: set "
                    "OTEL_EXPORTER_OTLP_ENDPOINT=http://%s instead", DEPRECATED_ENDPOINT, legacy)
    return legacy if "://" in legacy else f"http://{legacy}"


def parse_endpoint(url: str, environ: Mapping[str, str] = os.environ) -> tuple[str, int, bool]:
    """(host, port, tls) of an OTLP/gRPC endpoint, read as the SDK's exporter reads it: https
    is TLS, http plaintext, no scheme TLS unless OTEL_EXPORTER_OTLP_INSECURE=true."""
    parts = urlsplit(url if "://" in url else f"//{url}")
    if parts.scheme == "https":
        tls = True
    elif parts.scheme == "http":
        tls = False
    else:
        insecure = environ.get("OTEL_EXPORTER_OTLP_TRACES_INSECURE",
                               environ.get("OTEL_EXPORTER_OTLP_INSECURE", ""))
        tls = insecure.strip().lower() != "true"
    return parts.hostname or "", parts.port or 4317, tls


def configured_headers(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """`OTEL_EXPORTER_OTLP_TRACES_HEADERS` or `OTEL_EXPORTER_OTLP_HEADERS` (`k=v,k2=v2`, values
    URL-encoded), as the SDK reads them."""
    from opentelemetry.util.re import parse_env_headers

    text = (environ.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS")
            or environ.get("OTEL_EXPORTER_OTLP_HEADERS", ""))
    return parse_env_headers(text, liberal=True) if text else {}


def _is_platform_receiver(endpoint: str, settings: Settings) -> bool:
    """Whether the endpoint is the observability service of this platform (its address in
    AGENTMESH_PEERS, any replica of it): the only receiver the internal token is sent to."""
    address = settings.peer_addresses.get("observability", "")
    if not address:
        return False
    host, port, _ = parse_endpoint(endpoint)
    return f"{host}:{port}" in address.split("|")


def _semconv_modes(environ: Mapping[str, str] = os.environ) -> tuple[bool, bool]:
    """(old, new) RPC conventions to emit, by OTEL_SEMCONV_STABILITY_OPT_IN."""
    opted = {v.strip() for v in environ.get("OTEL_SEMCONV_STABILITY_OPT_IN", "").split(",")}
    if "rpc/dup" in opted:
        return True, True
    if "rpc" in opted:
        return False, True
    return True, False


class ServerSpan:
    """The span of one sampled call while it is served: current in OpenTelemetry's context (so
    log lines and child spans see it) and in `current_traceparent` (for calls it makes)."""

    __slots__ = ("span", "_old", "_new", "_tokens")

    def __init__(self, span, old: bool, new: bool) -> None:
        from opentelemetry.context import attach
        from opentelemetry.trace import set_span_in_context

        self.span, self._old, self._new = span, old, new
        span_context = span.get_span_context()
        traceparent = (f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-"
                       f"{int(span_context.trace_flags):02x}")
        self._tokens = (attach(set_span_in_context(span)),
                        current_traceparent.set(traceparent))

    def failed(self, code, error: Any = None, exc: BaseException | None = None) -> None:
        """Records a failure (`code` a grpc.StatusCode): the status code, `error.type`, and an
        `exception` event: the domain error's type, reason and message, or for an unexpected
        exception (`exc` not the domain error itself) the SDK's record with its stack."""
        from opentelemetry.trace import Status, StatusCode

        name, number = code.name, code.value[0]
        self._code(name, number)
        self.span.set_attribute("error.type", name)
        message = getattr(error, "message", "") if error is not None else ""
        if exc is not None and exc is not error:
            self.span.record_exception(exc)
        elif error is not None:
            self.span.add_event("exception", {
                "exception.type": f"{type(error).__module__}.{type(error).__qualname__}",
                "exception.message": message, "agentmesh.error.reason": error.reason})
        if name in _SERVER_ERRORS:
            self.span.set_status(Status(StatusCode.ERROR, message or None))

    def _code(self, code_name: str, code_number: int) -> None:
        if self._old:
            self.span.set_attribute("rpc.grpc.status_code", code_number)
        if self._new:
            self.span.set_attribute("rpc.response.status_code", code_name)

    def end(self, succeeded: bool) -> None:
        from opentelemetry.context import detach

        if succeeded:
            self._code("OK", 0)
        current_traceparent.reset(self._tokens[1])
        detach(self._tokens[0])
        self.span.end()


class InProcessFirst:
    """The OTLP exporter, except when this process serves the trace receiver it exports to
    (`agentmesh up`): then the spans are handed to it as the SDK made them (mesh.runtime.local,
    the observability service stores them as it stores an export), where encoding them to OTLP
    and decoding them back cost more than making them. Runs on the batch processor's thread;
    on the receiver's own loop (a flush at shutdown) or once it stops, spans go over OTLP."""

    def __init__(self, exporter: Any, address: str) -> None:
        self.exporter = exporter
        self.address = address

    def export(self, spans) -> Any:
        import asyncio

        from opentelemetry.sdk.trace.export import SpanExportResult

        from mesh.runtime import local

        found = local.receiver(self.address, "spans")
        if found is None or found[0].is_closed() or _running(found[0]):
            return self.exporter.export(spans)
        loop, receive = found
        handed = asyncio.run_coroutine_threadsafe(receive(spans), loop)
        try:
            handed.result(IN_PROCESS_EXPORT_SECONDS)
        except Exception as exc:  # noqa: BLE001 - as an export that failed: the batch is lost
            handed.cancel()
            log.warning("%d spans not stored: %s", len(spans), exc or type(exc).__name__)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.exporter.force_flush(timeout_millis)


IN_PROCESS_EXPORT_SECONDS = 10.0  # as long as the OTLP exporter's own timeout


def _running(loop: Any) -> bool:
    import asyncio

    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


class Tracing:
    """The tracing of one process: a TracerProvider per service it hosts, one exporter."""

    _instance: "Tracing | None" = None

    def __init__(self, endpoint: str, headers: Mapping[str, str] | None = None,
                 exporter: Any = None, hosted: tuple[str, ...] = (),
                 environ: Mapping[str, str] = os.environ, in_process: bool = False) -> None:
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased

        if exporter is None:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter(endpoint=endpoint, headers=dict(headers or {}) or None)
            host, port, tls = parse_endpoint(endpoint, environ)
            if in_process and not tls:
                exporter = InProcessFirst(exporter, f"{host}:{port}")
        self.endpoint = endpoint
        # Spans leave every half second unless OTEL_BSP_SCHEDULE_DELAY says otherwise, so a
        # user finds a request's trace right after the answer.
        self.processor = BatchSpanProcessor(
            exporter, schedule_delay_millis=None if environ.get("OTEL_BSP_SCHEDULE_DELAY")
            else 500)
        sampler_name = environ.get("OTEL_TRACES_SAMPLER", "").strip().lower()
        # Unset: follow the caller, and start no trace of our own (the gateway decides).
        self.sampler = None if sampler_name else ParentBased(ALWAYS_OFF)
        # A sampler other than "follow the caller" decides on every call, sampled or not.
        self.every_call = sampler_name not in ("", "parentbased_always_off")
        self.old_conventions, self.new_conventions = _semconv_modes(environ)
        # OTEL_SERVICE_NAME names a process's only service; several are each their own.
        self.single_name = (environ.get("OTEL_SERVICE_NAME", "").strip()
                            if len(hosted) == 1 else "")
        self._providers: dict[str, Any] = {}
        self._tracers: dict[str, Any] = {}

    @classmethod
    def of(cls, settings: Settings, hosted: tuple[str, ...] = ()) -> "Tracing | None":
        """The process's tracing, made on first use; None when traces are off."""
        if cls._instance is None:
            environ = os.environ
            endpoint = configured_endpoint(environ, settings, warn=True)
            if (not endpoint or environ.get("OTEL_SDK_DISABLED", "").lower() == "true"
                    or environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none"
                    or environ.get("OTEL_TRACES_SAMPLER", "").strip().lower() == "always_off"):
                return None
            headers = configured_headers(environ)
            if _is_platform_receiver(endpoint, settings):
                from mesh.runtime import internal

                headers[internal.HEADER] = internal.token(settings)
            cls._instance = cls(endpoint, headers, hosted=hosted,
                                in_process=settings.local_calls)
        return cls._instance

    @classmethod
    def current(cls) -> "Tracing | None":
        return cls._instance

    def provider(self, service: str):
        provider = self._providers.get(service)
        if provider is None:
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider

            from mesh.runtime.logs import version

            resource = Resource.create({"service.name": self.single_name or service_name(service),
                                        "service.namespace": SERVICE_NAMESPACE,
                                        "service.version": version()})
            provider = self._providers[service] = TracerProvider(
                resource=resource, sampler=self.sampler, shutdown_on_exit=False)
            provider.add_span_processor(self.processor)
        return provider

    def tracer(self, service: str):
        tracer = self._tracers.get(service)
        if tracer is None:
            # The schema of the RPC attributes written by default (v1.37); none when opted in
            # to the newer ones, which no released schema describes as a whole yet.
            schema = (None if self.new_conventions
                      else "https://opentelemetry.io/schemas/1.37.0")
            tracer = self._tracers[service] = self.provider(service).get_tracer(
                f"agentmesh.{service}", schema_url=schema)
        return tracer

    def start(self, service: str, method: str, metadata: Mapping[str, str],
              tenant_id: str = "") -> ServerSpan | None:
        """The SERVER span of a call (`method` is the gRPC path), current until `end()`, or
        None when the sampler drops it."""
        from opentelemetry.trace import SpanKind

        full_name = method.lstrip("/")
        rpc_service, _, rpc_method = full_name.rpartition("/")
        attributes: dict[str, Any] = {"agentmesh.service": service,
                                      "agentmesh.tenant_id": tenant_id}
        if self.old_conventions:
            attributes.update({"rpc.system": "grpc", "rpc.service": rpc_service,
                               "rpc.method": rpc_method})
        if self.new_conventions:
            attributes.update({"rpc.system.name": "grpc", "rpc.method": full_name})
        span = self.tracer(service).start_span(
            full_name, context=parent_context(metadata.get(TRACEPARENT, ""),
                                              metadata.get(TRACESTATE, "")),
            kind=SpanKind.SERVER, attributes=attributes)
        if not span.is_recording():
            return None
        return ServerSpan(span, self.old_conventions, self.new_conventions)

    def force_flush(self, timeout_millis: int = 2000) -> bool:
        return self.processor.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self.processor.shutdown()  # shared by every provider: shut once, here
        if Tracing._instance is self:
            Tracing._instance = None


# A parent longer than this (a client's own tracestate can be kilobytes) is read, not kept.
_KEPT_PARENT_CHARS = 512


def parent_context(traceparent: str, tracestate: str = ""):
    """The OpenTelemetry context of a W3C parent (read by the SDK's propagator), for a span to
    start in. The calls one span makes all carry its traceparent, so each is read once and
    kept, the 1,024 most recent (the propagator's regular expressions were a quarter of a
    span's start); a Context is immutable, so every span of that parent shares it."""
    if len(traceparent) + len(tracestate) > _KEPT_PARENT_CHARS:
        return _read_parent(traceparent, tracestate)
    return _kept_parent(traceparent, tracestate)


def _read_parent(traceparent: str, tracestate: str):
    carrier = {TRACEPARENT: traceparent}
    if tracestate:
        carrier[TRACESTATE] = tracestate
    return _w3c_propagator().extract(carrier)


_kept_parent = functools.lru_cache(maxsize=1024)(_read_parent)


@functools.cache
def _w3c_propagator():
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator()


@contextlib.contextmanager
def client_span(name: str, attributes: Mapping[str, Any]) -> Iterator[Any]:
    """A CLIENT span of the call being served (a model request), current inside the block, or
    None (and no cost beyond a context lookup) when that call is not traced. An exception that
    leaves the block fails the span, with its `reason` as `error.type` when it has one."""
    from opentelemetry.context import attach, detach
    from opentelemetry.trace import get_current_span, set_span_in_context

    from mesh.runtime.context import current_service

    tracing = Tracing._instance
    parent = get_current_span()
    if tracing is None or not parent.is_recording():
        yield None
        return
    from opentelemetry.trace import SpanKind, Status, StatusCode

    # Filed under the tenant of the call it is part of, as that call's span is.
    inherited = {k: v for k, v in (getattr(parent, "attributes", None) or {}).items()
                 if k in ("agentmesh.tenant_id", "agentmesh.service")}
    span = tracing.tracer(current_service.get() or "mesh").start_span(
        name, kind=SpanKind.CLIENT, attributes={**inherited, **dict(attributes)})
    token = attach(set_span_in_context(span))
    try:
        yield span
    except BaseException as exc:
        span.set_attribute("error.type", getattr(exc, "reason", "") or type(exc).__qualname__)
        span.set_status(Status(StatusCode.ERROR, str(getattr(exc, "message", "")) or None))
        raise
    finally:
        detach(token)
        span.end()


def annotate(**attributes: Any) -> None:
    """Adds attributes to the span of the call being served (`agentmesh.call_id=...`, by which
    observability finds the trace); nothing when the call is not traced."""
    from opentelemetry.trace import get_current_span

    span = get_current_span()
    if span.is_recording():
        span.set_attributes({k.replace("__", "."): v for k, v in attributes.items()})


def traceparent() -> str:
    """The `traceparent` of the call being served ("" when it is not traced): stored with work
    that goes on after the call (a workflow execution), so that the work's spans join its trace."""
    return current_traceparent.get()


@contextlib.contextmanager
def background_span(name: str, parent: str, attributes: Mapping[str, Any]) -> Iterator[Any]:
    """An INTERNAL span of work done outside any call (a workflow step), a child of the stored
    `parent` traceparent: none (and no cost) when there is no parent or tracing is off. Current
    inside the block, so the calls it makes carry its trace."""
    tracing = Tracing._instance
    if tracing is None or not parent:
        yield None
        return
    from opentelemetry.context import attach, detach
    from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context

    from mesh.runtime.context import current_service

    context = parent_context(parent)
    span = tracing.tracer(current_service.get() or "mesh").start_span(
        name, context=context, kind=SpanKind.INTERNAL, attributes=dict(attributes))
    if not span.is_recording():
        yield None
        return
    token = attach(set_span_in_context(span))
    saved = current_traceparent.set(
        f"00-{span.get_span_context().trace_id:032x}-{span.get_span_context().span_id:016x}-01")
    try:
        yield span
    except BaseException as exc:
        span.set_status(Status(StatusCode.ERROR, str(exc)[:200] or None))
        raise
    finally:
        current_traceparent.reset(saved)
        detach(token)
        span.end()
