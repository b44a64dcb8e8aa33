"""The way to a model: the agent's model first, then its fallbacks, each request retried.

Per model (its master-data `parameters`, or the agent's `config`, which wins):
* `fallback_models` — model names or ids tried in order when the model answers a 5xx, times
  out or cannot be reached (after its retries); a 4xx other than 429 is the request's own fault
  and fails at once.
* `max_retries` (default 2) — retries of a 429, a 5xx, a timeout or an unreachable server, after
  the answer's `Retry-After` (or `retry-after-ms`; capped at `max_retry_after_seconds`, default
  30 — a longer wait fails over instead) or else a short exponential backoff (0.5 s, 1 s, ...).
* `timeout_seconds` (agent: `model_timeout_seconds`) — each request's own timeout.
A streamed answer that broke after its first token is not retried (the client has seen it).

Every request tried is recorded on the call (`model_attempts`): model, outcome (`ok`,
`retried`, `failed over`, `failed`), HTTP status, reason and milliseconds.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from mesh.agents.model_client import ChatClient, ModelConnections, ModelError, ModelTurn
from mesh.runtime.egress import EgressPolicy
from mesh.runtime.masterdata_client import ModelSpec

DEFAULT_RETRIES = 2
DEFAULT_MAX_RETRY_AFTER = 30.0


@dataclass
class Candidate:
    spec: ModelSpec
    api_key: str
    timeout: float
    retries: int = DEFAULT_RETRIES
    max_retry_after: float = DEFAULT_MAX_RETRY_AFTER


class ModelPath:
    """`complete()` over the candidates in order; `attempts` what was tried."""

    def __init__(self, candidates: list[Candidate], policy: EgressPolicy,
                 parameters: dict[str, Any] | None = None,
                 connections: ModelConnections | None = None) -> None:
        self.candidates = candidates
        self.clients = [ChatClient(c.spec, c.api_key, policy, timeout=c.timeout, max_retries=0,
                                   parameters=parameters, connections=connections)
                        for c in candidates]
        self.attempts: list[dict[str, Any]] = []
        self.answered_by: ModelSpec = candidates[0].spec

    async def close(self) -> None:
        for client in self.clients:
            await client.close()

    def _record(self, spec: ModelSpec, outcome: str, started: float,
                error: ModelError | None = None) -> None:
        self.attempts.append({"model": spec.name, "outcome": outcome,
                              "status": error.status if error else 200,
                              "reason": error.reason if error else "",
                              "ms": int((time.perf_counter() - started) * 1000)})

    async def complete(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]],
                       max_tokens: int | None = None, on_token=None) -> ModelTurn:
        last: ModelError | None = None
        for index, (candidate, client) in enumerate(zip(self.candidates, self.clients,
                                                        strict=True)):
            more = index + 1 < len(self.candidates)
            for attempt in range(candidate.retries + 1):
                started = time.perf_counter()
                try:
                    turn = await client.complete(messages, tools, max_tokens, on_token)
                except ModelError as exc:
                    last = exc
                    if exc.streamed or not exc.transient:
                        self._record(candidate.spec, "failed", started, exc)
                        raise
                    wait = exc.retry_after if exc.retry_after is not None else 0.5 * 2 ** attempt
                    if attempt < candidate.retries and wait <= candidate.max_retry_after:
                        self._record(candidate.spec, "retried", started, exc)
                        await asyncio.sleep(wait)
                        continue
                    if exc.status == 429 and not more:
                        self._record(candidate.spec, "failed", started, exc)
                        raise
                    self._record(candidate.spec, "failed over" if more else "failed",
                                 started, exc)
                    break
                self._record(candidate.spec, "ok", started)
                self.answered_by = candidate.spec
                return turn
        assert last is not None
        if len(self.candidates) > 1:
            raise ModelError(last.reason, f"{last.message} (tried "
                             f"{', '.join(c.spec.name for c in self.candidates)})",
                             status=last.status)
        raise last
