"""What the system service observes, sampled every `AGENTMESH_SYSTEM_SAMPLE_SECONDS` and kept for
`AGENTMESH_SYSTEM_HISTORY_SECONDS` in a bounded ring (memory stays flat): the host's CPU, memory
and disk (from /proc and the data directory's file system), and per service the request rate,
the error rate, the 95th percentile latency, and the CPU and memory of the process hosting it —
read from the Prometheus text every service process serves (`AGENTMESH_METRICS_TARGETS`, which
`agentmesh up` sets; the gateway's metrics listener is one of them), or from this process's own
registry when no targets are set. Rates are differences between two samples."""

from __future__ import annotations

import asyncio
import collections
import math
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

from prometheus_client.parser import text_string_to_metric_families

from mesh.runtime.metrics import scrape

# gRPC codes that mean the server failed (the 5xx of the REST API); the others are the caller's.
SERVER_FAILURES = {"INTERNAL", "UNKNOWN", "UNAVAILABLE", "DEADLINE_EXCEEDED", "DATA_LOSS"}
_WANTED = ("agentmesh_requests_total", "agentmesh_service_request_duration_seconds_bucket",
           "process_cpu_seconds_total", "process_resident_memory_bytes",
           "envoy_http_downstream_rq_total", "envoy_http_downstream_cx_active")
# Asked of every target, so that it renders only what is read: prometheus_client's exposition
# takes `name[]` (the samples wanted), Envoy's admin `filter` (a regular expression on its stat
# names; its full text is ~350 KB); each ignores the other's parameter.
_OWN = tuple(name for name in _WANTED if not name.startswith("envoy_"))
_QUERY = urlencode([*(("name[]", name) for name in _OWN),
                    ("filter", r"\.downstream_(rq_total|cx_active)$")])


@dataclass
class ServicePoint:
    cpu_percent: float = 0.0
    memory_mb: float = 0.0
    request_rate: float = 0.0
    error_rate: float = 0.0
    p95_latency_ms: float = 0.0


@dataclass
class Sample:
    at: float
    cpu_percent: float = 0.0
    memory_percent: float = 0.0
    memory_used_mb: float = 0.0
    disk_percent: float = 0.0
    request_rate: float = 0.0
    error_rate: float = 0.0
    p95_latency_ms: float = 0.0
    active_connections: int = 0
    services: dict[str, ServicePoint] = field(default_factory=dict)


@dataclass
class _Counters:
    """Cumulative figures of one scrape."""

    at: float
    requests: dict[str, float] = field(default_factory=dict)      # service -> all
    failures: dict[str, float] = field(default_factory=dict)      # service -> server failures
    buckets: dict[str, dict[float, float]] = field(default_factory=dict)  # service -> le -> n
    process_cpu: dict[int, float] = field(default_factory=dict)   # target -> cpu seconds
    process_memory: dict[int, float] = field(default_factory=dict)
    hosts: dict[str, int] = field(default_factory=dict)           # service -> target
    gateway_requests: float | None = None
    gateway_connections: int = 0
    # Every histogram bound seen, those of empty buckets too (whose lines are not kept).
    bounds: set[float] = field(default_factory=set)


# One sample line of the text exposition format: name, optional {labels}, value (a timestamp
# may follow). Label values are quoted, with \\, \" and \n escaped.
_SAMPLE = re.compile(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}
_BUCKET = "agentmesh_service_request_duration_seconds_bucket"
_EMPTY = (" 0.0", " 0")


def _samples(text: str):
    """(name, labels, value) of the wanted samples of a Prometheus text exposition. The lines
    are read with two regular expressions rather than prometheus_client's parser, which reads
    character by character: with a histogram per RPC the scrape every few seconds cost more
    than everything else the idle mesh does (docs/budgets.md). A line they cannot read goes
    to that parser."""
    for line in text.splitlines():
        if not line.startswith(_WANTED):
            continue
        if line.endswith(_EMPTY) and line.startswith(_BUCKET):
            # Most of a scrape: one histogram per RPC, most of them never observed. An empty
            # bucket adds nothing but its bound (cumulative buckets: every lower one of the
            # same series is empty too), read without the regular expressions.
            start = line.rfind('le="') + 4
            if start > 3:
                yield _BUCKET, {"le": line[start:line.index('"', start)]}, 0.0
                continue
        match = _SAMPLE.match(line)
        try:
            if match is None:
                raise ValueError(line)
            name, body, value = match.groups()
            labels = {key: _unescape(raw) for key, raw in _LABEL.findall(body or "")}
            yield name, labels, float(value)
        except ValueError:
            yield from _parsed(line)


def _unescape(raw: str) -> str:
    return re.sub(r'\\[\\"n]', lambda m: _UNESCAPE[m.group(0)], raw) if "\\" in raw else raw


def _parsed(line: str):
    """One sample line as prometheus_client's parser reads it (nothing when it cannot)."""
    try:
        for family in text_string_to_metric_families(line):
            for sample in family.samples:
                yield sample.name, sample.labels, sample.value
    except ValueError:
        return


def parse(text: str, target: int, into: _Counters) -> None:
    for name, labels, value in _samples(text):
        if name == "agentmesh_requests_total":
            service = labels.get("service", "")
            into.hosts.setdefault(service, target)
            into.requests[service] = into.requests.get(service, 0.0) + value
            if labels.get("code") in SERVER_FAILURES:
                into.failures[service] = into.failures.get(service, 0.0) + value
        elif name == _BUCKET:
            le = math.inf if labels.get("le") == "+Inf" else float(labels.get("le", "inf"))
            into.bounds.add(le)
            if value:
                per = into.buckets.setdefault(labels.get("service", ""), {})
                per[le] = per.get(le, 0.0) + value
        elif name == "process_cpu_seconds_total":
            into.process_cpu[target] = value
        elif name == "process_resident_memory_bytes":
            into.process_memory[target] = value
        elif name == "envoy_http_downstream_rq_total" and _public(labels):
            into.gateway_requests = (into.gateway_requests or 0.0) + value
        elif name == "envoy_http_downstream_cx_active" and _public(labels):
            into.gateway_connections += int(value)


def _public(labels: dict[str, str]) -> bool:
    """Envoy's figures of the API's listener, not of its admin interface or metrics listener
    (whose scrapes are not traffic)."""
    prefix = labels.get("envoy_http_conn_manager_prefix", "")
    return "admin" not in prefix and prefix != "metrics"


def p95(before: dict[float, float], after: dict[float, float],
        empty: set[float] | frozenset[float] = frozenset()) -> float:
    """The 95th percentile (ms) of the observations between two cumulative histograms
    (bound -> count; `empty`: more bounds, whose buckets hold nothing)."""
    bounds = sorted(set(after).union(empty))
    counts = [after.get(b, 0.0) - before.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0.0
    if total <= 0:
        return 0.0
    wanted, lower, previous = 0.95 * total, 0.0, 0.0
    for bound, cumulative in zip(bounds, counts):
        if cumulative >= wanted:
            if math.isinf(bound):
                return lower * 1000
            share = (wanted - previous) / (cumulative - previous) if cumulative > previous else 1
            return (lower + (bound - lower) * share) * 1000
        lower, previous = bound, cumulative
    return lower * 1000


def _cpu_times() -> tuple[float, float] | None:
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        values = [float(v) for v in fields]
        idle = values[3] + (values[4] if len(values) > 4 else 0)
        return idle, sum(values[:8])
    except (OSError, ValueError, IndexError):
        return None


def _memory() -> tuple[float, float]:
    """(percent used, MB used) of the host, from /proc/meminfo."""
    try:
        info = {}
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, rest = line.partition(":")
            info[key] = float(rest.split()[0])  # kB
        total, available = info["MemTotal"], info.get("MemAvailable", info.get("MemFree", 0))
        used = total - available
        return round(100 * used / total, 2), round(used / 1024, 1)
    except (OSError, ValueError, KeyError, ZeroDivisionError):
        return 0.0, 0.0


def _only_wanted(target: str) -> str:
    return f"{target}{'&' if '?' in target else '?'}{_QUERY}"


class Sampler:
    def __init__(self, settings) -> None:
        self.settings = settings
        self.targets = [t.strip() for t in settings.metrics_targets.split(",") if t.strip()]
        size = max(2, int(settings.system_history_seconds / settings.system_sample_seconds) + 1)
        self.history: collections.deque[Sample] = collections.deque(maxlen=size)
        self._cpu = _cpu_times()
        self._last: _Counters | None = None

    async def _counters(self) -> _Counters:
        counters = _Counters(at=time.monotonic())
        if not self.targets:
            from prometheus_client import REGISTRY, generate_latest

            parse(generate_latest(REGISTRY.restricted_registry(_OWN)).decode(), 0, counters)
            return counters
        texts = await asyncio.gather(*(asyncio.to_thread(scrape, _only_wanted(url))
                                       for url in self.targets), return_exceptions=True)
        for index, text in enumerate(texts):
            if isinstance(text, str):
                parse(text, index, counters)
        return counters

    async def sample(self) -> Sample:
        sample = Sample(at=time.time())
        cpu = _cpu_times()
        if cpu and self._cpu and cpu[1] > self._cpu[1]:
            idle, total = cpu[0] - self._cpu[0], cpu[1] - self._cpu[1]
            sample.cpu_percent = round(100 * (1 - idle / total), 2)
        self._cpu = cpu or self._cpu
        sample.memory_percent, sample.memory_used_mb = _memory()
        try:
            usage = shutil.disk_usage(self.settings.data_dir)
            sample.disk_percent = round(100 * usage.used / usage.total, 2)
        except OSError:
            pass
        now = await self._counters()
        last, self._last = self._last, now
        sample.active_connections = now.gateway_connections
        if last is not None and now.at > last.at:
            elapsed = now.at - last.at
            all_requests = all_failures = 0.0
            merged_before: dict[float, float] = {}
            merged_after: dict[float, float] = {}
            for service, total in now.requests.items():
                requests = max(0.0, total - last.requests.get(service, 0.0))
                failures = max(0.0, now.failures.get(service, 0.0)
                               - last.failures.get(service, 0.0))
                all_requests += requests
                all_failures += failures
                target = now.hosts.get(service, 0)
                cpu_seconds = now.process_cpu.get(target, 0.0) - last.process_cpu.get(target, 0.0)
                before = last.buckets.get(service, {})
                after = now.buckets.get(service, {})
                for bound, n in before.items():
                    merged_before[bound] = merged_before.get(bound, 0.0) + n
                for bound, n in after.items():
                    merged_after[bound] = merged_after.get(bound, 0.0) + n
                sample.services[service] = ServicePoint(
                    cpu_percent=round(max(0.0, 100 * cpu_seconds / elapsed), 2),
                    memory_mb=round(now.process_memory.get(target, 0.0) / 1048576, 1),
                    request_rate=round(requests / elapsed, 3),
                    error_rate=round(failures / requests, 4) if requests else 0.0,
                    p95_latency_ms=round(p95(before, after, now.bounds), 2))
            sample.error_rate = round(all_failures / all_requests, 4) if all_requests else 0.0
            sample.p95_latency_ms = round(p95(merged_before, merged_after, now.bounds), 2)
            if now.gateway_requests is not None and last.gateway_requests is not None:
                sample.request_rate = round(
                    max(0.0, now.gateway_requests - last.gateway_requests) / elapsed, 3)
            else:
                sample.request_rate = round(all_requests / elapsed, 3)
        self.history.append(sample)
        return sample
