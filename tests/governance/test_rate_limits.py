"""Envoy's RateLimitService as governance implements it, called over gRPC as Envoy calls it:
counters in memory, in Redis, and shared by two instances through Redis."""

from __future__ import annotations

import os
import uuid

import pytest
import redis

from agentmesh.governance.v1 import governance_pb2 as pb
from agentmesh.governance.v1 import governance_pb2_grpc as pb_grpc
from agentmesh.thirdparty.envoy.extensions.common.ratelimit.v3 import ratelimit_pb2 as common
from agentmesh.thirdparty.envoy.service.ratelimit.v3 import rls_pb2 as rls
from agentmesh.thirdparty.envoy.service.ratelimit.v3 import rls_pb2_grpc as rls_grpc
from mesh.governance.service import DEFINITION
from tests.harness import Identity, ServiceHarness

REDIS_URL = os.environ.get("AGENTMESH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
LIMITS = {"rate_limit_per_tenant_per_minute": 5, "rate_limit_per_ip_per_minute": 3,
          "rate_limit_global_per_minute": 0}


@pytest.fixture(scope="module")
def redis_url():
    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis is not reachable at {REDIS_URL}: {exc}")
    return REDIS_URL


def _harness(tmp_path_factory, name, **env):
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update({f"AGENTMESH_{k.upper()}": str(v) for k, v in env.items()})
    try:
        return ServiceHarness(DEFINITION, tmp_path_factory.mktemp(name))
    finally:
        for key in env:
            os.environ.pop(f"AGENTMESH_{key.upper()}", None)


def _ask(stub, tenant, ip="10.0.0.1"):
    request = rls.RateLimitRequest(domain="agentmesh", descriptors=[
        common.RateLimitDescriptor(entries=[common.RateLimitDescriptor.Entry(key="tenant", value=tenant)]),
        common.RateLimitDescriptor(entries=[common.RateLimitDescriptor.Entry(key="remote_address", value=ip)]),
    ], hits_addend=1)
    return stub.ShouldRateLimit(request)


@pytest.fixture(scope="module")
def memory(tmp_path_factory):
    harness = _harness(tmp_path_factory, "memory", **LIMITS)
    yield harness
    harness.close()


def test_memory_counters_enforce_the_tenant_limit(memory):
    stub = memory.stub(rls_grpc.RateLimitServiceStub)
    tenant = str(uuid.uuid4())
    codes = [_ask(stub, tenant, ip=f"10.0.0.{i}").overall_code for i in range(7)]
    assert codes == [rls.RateLimitResponse.OK] * 5 + [rls.RateLimitResponse.OVER_LIMIT] * 2
    reply = _ask(stub, str(uuid.uuid4()), ip="10.9.9.9")
    tenant_status = reply.statuses[0]
    assert tenant_status.current_limit.requests_per_unit == 5
    assert tenant_status.current_limit.unit == rls.RateLimitResponse.RateLimit.MINUTE
    assert tenant_status.limit_remaining == 4
    assert 0 < tenant_status.duration_until_reset.seconds <= 60


def test_per_ip_limit_counts_across_tenants(memory):
    stub = memory.stub(rls_grpc.RateLimitServiceStub)
    codes = [_ask(stub, str(uuid.uuid4()), ip="192.0.2.7").overall_code for _ in range(4)]
    assert codes[-1] == rls.RateLimitResponse.OVER_LIMIT and codes[:3] == [rls.RateLimitResponse.OK] * 3


def test_usage_is_visible_at_get_rate_limits(memory):
    stub = memory.stub(rls_grpc.RateLimitServiceStub)
    me = Identity()
    for _ in range(2):
        _ask(stub, me.tenant_id, ip=str(uuid.uuid4()))
    limits = memory.stub(pb_grpc.GovernanceServiceStub).GetRateLimits(
        pb.GetRateLimitsRequest(), metadata=me.metadata())
    tenant = next(l for l in limits.limits if l.name == "per_tenant")
    assert (tenant.limit, tenant.used, tenant.remaining) == (5, 2, 3)
    assert tenant.window.seconds == 60 and tenant.reset_at.seconds > 0


def test_redis_counters_are_shared_by_two_instances(tmp_path_factory, redis_url):
    first = _harness(tmp_path_factory, "redis-a", redis_url=redis_url, **LIMITS)
    second = _harness(tmp_path_factory, "redis-b", redis_url=redis_url, **LIMITS)
    try:
        stubs = [first.stub(rls_grpc.RateLimitServiceStub), second.stub(rls_grpc.RateLimitServiceStub)]
        tenant = str(uuid.uuid4())
        codes = [_ask(stubs[i % 2], tenant, ip=str(uuid.uuid4())).overall_code for i in range(6)]
        # One limit of 5 across both instances, not 5 each.
        assert codes == [rls.RateLimitResponse.OK] * 5 + [rls.RateLimitResponse.OVER_LIMIT]
        keys = redis.Redis.from_url(redis_url).keys(f"agentmesh:rl:agentmesh:tenant={tenant}:*")
        assert len(keys) == 1
        assert 0 < redis.Redis.from_url(redis_url).ttl(keys[0]) <= 65
    finally:
        first.close()
        second.close()


def test_a_route_can_have_its_own_limit():
    from mesh.governance.limits import Limits, MemoryCounters
    from mesh.governance.settings import GovernanceSettings

    settings = GovernanceSettings(rate_limit_per_route_per_minute=100, rate_limit_routes={
        "/agentmesh.agents.v1.AgentService/InteractWithAgent": 3})
    limits = Limits(settings, MemoryCounters())
    tenant = ("tenant", "t1")
    assert limits.limit_for([tenant, ("route", "/agentmesh.agents.v1.AgentService/InteractWithAgent")]) \
        == ("per_route", 3)
    assert limits.limit_for([tenant, ("route", "/agentmesh.agents.v1.AgentService/GetAgent")]) \
        == ("per_route", 100)
