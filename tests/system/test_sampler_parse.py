"""The sampler reads Prometheus text (with two regular expressions; prometheus_client's parser
for a line they cannot read): the figures of a real exposition (made by prometheus_client, as
every service process serves it) and Envoy's lines, read as that parser reads them."""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from prometheus_client.parser import text_string_to_metric_families

from mesh.system.sampler import _Counters, _samples, p95, parse


def test_a_real_exposition_gives_requests_failures_buckets_and_the_gateways_figures():
    registry = CollectorRegistry()
    requests = Counter("agentmesh_requests", "calls", ["service", "method", "code"],
                       registry=registry)
    latency = Histogram("agentmesh_service_request_duration_seconds", "latency", ["service"],
                        buckets=(0.01, 0.1), registry=registry)
    requests.labels("agents", "GetAgent", "OK").inc(7)
    requests.labels("agents", "GetAgent", "INTERNAL").inc(2)
    requests.labels("agents", "GetAgent", "NOT_FOUND").inc(1)
    latency.labels("agents").observe(0.05)
    text = generate_latest(registry).decode() + "\n".join([
        '# TYPE envoy_http_downstream_rq_total counter',
        'envoy_http_downstream_rq_total{envoy_http_conn_manager_prefix="ingress_http"} 40',
        'envoy_http_downstream_rq_total{envoy_http_conn_manager_prefix="admin"} 99',
        'envoy_http_downstream_cx_active{envoy_http_conn_manager_prefix="ingress_http"} 3',
        'process_resident_memory_bytes 1.5e+08',
        'envoy_cluster_upstream_rq_total{envoy_cluster_name="agents"} 12',  # not wanted
    ]) + "\n"
    counters = _Counters(at=0.0)
    parse(text, 0, counters)
    assert counters.requests == {"agents": 10.0} and counters.failures == {"agents": 2.0}
    # The empty bucket (le=0.01) is kept only as a bound.
    assert counters.buckets == {"agents": {0.1: 1.0, math.inf: 1.0}}
    assert counters.bounds == {0.01, 0.1, math.inf}
    assert counters.gateway_requests == 40.0 and counters.gateway_connections == 3
    assert counters.process_memory == {0: 1.5e8} and counters.hosts == {"agents": 0}


def test_a_malformed_line_costs_only_itself():
    counters = _Counters(at=0.0)
    parse('agentmesh_requests_total{service="a",code="OK"} 1\n'
          'agentmesh_requests_total{service="b" 2\n'
          'agentmesh_requests_total{service="c",code="OK"} 3\n', 0, counters)
    assert counters.requests == {"a": 1.0, "c": 3.0}


def test_every_wanted_sample_is_read_as_prometheus_clients_parser_reads_it():
    registry = CollectorRegistry()
    requests = Counter("agentmesh_requests", "calls", ["service", "method", "code"],
                       registry=registry)
    latency = Histogram("agentmesh_service_request_duration_seconds", "latency", ["service", "method"],
                        registry=registry)
    for service in ("agents", 'we"ird\\name', "line\nbreak"):
        for method in ("Get", "List", "Create"):
            requests.labels(service, method, "OK").inc(3)
            latency.labels(service, method).observe(0.02)
    text = generate_latest(registry).decode()
    expected = [(sample.name, sample.labels, sample.value)
                for family in text_string_to_metric_families(text)
                for sample in family.samples
                if sample.name.startswith(("agentmesh_requests_total",
                                           "agentmesh_service_request_duration_seconds_bucket"))]
    assert len(expected) > 50
    read = list(_samples(text))
    assert len(read) == len(expected)
    for (name, labels, value), wanted in zip(read, expected):
        if value == 0 and name.endswith("_bucket"):  # an empty bucket: its bound only
            assert wanted[2] == 0 and labels == {"le": wanted[1]["le"]}
        else:
            assert (name, labels, value) == wanted


def test_the_95th_percentile_is_the_same_without_the_empty_buckets_lines():
    """Empty buckets are read as bounds only: the estimate between two scrapes is the one the
    whole histograms give (its interpolation starts at the bound below the first non-empty
    bucket)."""
    registry = CollectorRegistry()
    latency = Histogram("agentmesh_service_request_duration_seconds", "latency", ["service"],
                        registry=registry)
    before = _Counters(at=0.0)
    parse(generate_latest(registry).decode(), 0, before)
    for seconds in (0.03, 0.04, 0.045):  # all in (0.025, 0.05]: 0.025's bucket is empty
        latency.labels("agents").observe(seconds)
    after = _Counters(at=1.0)
    parse(generate_latest(registry).decode(), 0, after)
    whole = {float(s.labels["le"]): s.value
             for family in text_string_to_metric_families(generate_latest(registry).decode())
             for s in family.samples if s.name.endswith("_bucket")}
    estimate = p95(before.buckets.get("agents", {}), after.buckets["agents"], after.bounds)
    assert estimate == p95({}, whole) and 48 < estimate <= 50


def test_a_scrape_asks_each_target_for_the_wanted_lines_only():
    """Every target is asked for what the sampler reads: prometheus_client's exposition by
    `name[]` (the per-RPC histogram, most of a scrape, is left out), Envoy's by `filter`."""
    from urllib.parse import parse_qs, urlsplit

    from prometheus_client import REGISTRY, generate_latest

    from mesh.runtime.metrics import MethodMetrics
    from mesh.system.sampler import _OWN, _only_wanted

    url = _only_wanted("http://127.0.0.1:9/metrics")
    query = parse_qs(urlsplit(url).query)
    assert query["name[]"] == list(_OWN) and "envoy_http_downstream_rq_total" not in _OWN
    assert _only_wanted("http://h/stats/prometheus?usedonly").startswith(
        "http://h/stats/prometheus?usedonly&name%5B%5D=")
    MethodMetrics("agents", "GetAgent").observe(0.02)
    text = generate_latest(REGISTRY.restricted_registry(query["name[]"])).decode()
    assert "agentmesh_service_request_duration_seconds_bucket" in text
    assert "agentmesh_request_duration_seconds_bucket" not in text  # the per-RPC histogram
    counters = _Counters(at=0.0)
    parse(text, 0, counters)
    assert counters.buckets["agents"][0.025] >= 1 and counters.requests["agents"] >= 1
