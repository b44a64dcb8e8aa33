"""Envoy's global rate-limit API (`envoy.service.ratelimit.v3.RateLimitService`): the gateway's
rate-limit filter asks it about every request, sending every descriptor of the request in one
call; the request is over the limit when any descriptor is. The limits are mesh.governance.limits.
"""

from __future__ import annotations

from datetime import timedelta

from agentmesh.thirdparty.envoy.service.ratelimit.v3 import rls_pb2 as rls
from agentmesh.thirdparty.envoy.service.ratelimit.v3 import rls_pb2_grpc as rls_grpc
from mesh.governance.limits import OK, OVER_LIMIT
from mesh.governance.state import GovernanceState
from mesh.runtime.service import Runtime

_UNITS = {1: rls.RateLimitResponse.RateLimit.SECOND, 60: rls.RateLimitResponse.RateLimit.MINUTE,
          3600: rls.RateLimitResponse.RateLimit.HOUR, 86400: rls.RateLimitResponse.RateLimit.DAY}


class RateLimitService(rls_grpc.RateLimitServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        state: GovernanceState = runtime.state
        self.limits = state.limits

    async def ShouldRateLimit(self, request: rls.RateLimitRequest, context) -> rls.RateLimitResponse:
        hits = request.hits_addend or 1
        response = rls.RateLimitResponse(overall_code=OK)
        exceeded = []
        for descriptor in request.descriptors:
            entries = [(e.key, e.value) for e in descriptor.entries]
            code, limit, remaining, reset_in = await self.limits.hit(
                request.domain, entries, descriptor.hits_addend.value or hits
                if descriptor.HasField("hits_addend") else hits)
            status = response.statuses.add(code=code)
            if limit:
                status.current_limit.requests_per_unit = limit
                status.current_limit.unit = _UNITS.get(self.limits.window,
                                                       rls.RateLimitResponse.RateLimit.MINUTE)
                status.limit_remaining = remaining
                status.duration_until_reset.FromTimedelta(timedelta(seconds=reset_in))
            if code == OVER_LIMIT:
                response.overall_code = OVER_LIMIT
                exceeded.append((self.limits.limit_for(entries)[0], limit, reset_in))
        if exceeded:
            # Envoy puts this in the 429's body, which becomes the envelope's `message`.
            name, limit, reset_in = exceeded[0]
            response.raw_body = (f"rate limit exceeded: {name} allows {limit} requests per "
                                 f"{self.limits.window}s; retry in {reset_in}s").encode()
        return response
