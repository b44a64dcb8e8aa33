"""Outgoing webhooks: signed, retried with backoff in the background, never blocking the caller.

    sender = WebhookSender(egress=EgressPolicy.from_settings(settings))
    sender.send(url, secret, "governance.decision", {...})   # returns at once
    ...
    await sender.close()                                     # at shutdown: drains briefly

Every delivery is a POST of the JSON payload, signed as Standard Webhooks specifies
(standardwebhooks.com; any receiver verifies it with a stock library in its own language):
    webhook-id:         a UUID, the same on every retry of one delivery (receivers dedupe)
    webhook-timestamp:  unix seconds of this attempt
    webhook-signature:  v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">
The key is the secret's bytes: a secret of the form `whsec_<base64>` (every secret the platform
makes, `new_secret()`) is its base64 part decoded, as the libraries read it; any other secret (one
a user chose for an integration webhook, or one made before Standard Webhooks) is its UTF-8 bytes,
and `standard_secret()` gives the `whsec_` form a library takes for it. Also sent:
    X-AgentMesh-Event:      the event type
    X-AgentMesh-Delivery:   the same UUID as webhook-id
    X-AgentMesh-Signature:  t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" with the secret>
the last one the platform's own signature before Standard Webhooks (`verify()`), kept for one
release. Receivers reject old timestamps, which stops replays. A network error, a timeout, 408, 429 or a 5xx
is retried with exponential backoff and jitter up to `max_attempts`; any other 4xx is final (the
receiver refused it). Deliveries live in memory: a restart loses the ones still pending.
Every attempt goes through the egress guard (`mesh.runtime.egress`, the one outbound client):
a refused address is a final failure, not retried. Used by governance decision events,
integration webhooks (`mesh.integration.events`) and alert notifications (both through the
runtime's outbox).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx2

from mesh.runtime.egress import EgressPolicy
from mesh.runtime.errors import DomainError

log = logging.getLogger("mesh.webhooks")

SIGNATURE_HEADER = "X-AgentMesh-Signature"  # the platform's own, before Standard Webhooks
ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
STANDARD_SIGNATURE_HEADER = "webhook-signature"
SECRET_PREFIX = "whsec_"
EVENT_HEADER = "X-AgentMesh-Event"
DELIVERY_HEADER = "X-AgentMesh-Delivery"
_RETRYABLE = {408, 429}


def encode(payload: dict[str, Any]) -> str:
    """The JSON body of a delivery, compact, as it is signed and sent."""
    return json.dumps(payload, separators=(",", ":"), default=str)


def new_secret() -> str:
    """A new signing secret in the Standard Webhooks form: `whsec_` and 32 random bytes in
    base64."""
    return SECRET_PREFIX + base64.b64encode(os.urandom(32)).decode()


def signing_key(secret: str) -> bytes:
    """The HMAC key of a secret: the bytes a `whsec_<base64>` secret encodes, or any other
    secret's UTF-8 bytes."""
    if secret.startswith(SECRET_PREFIX):
        encoded = secret[len(SECRET_PREFIX):]
        try:  # standard base64, its padding optional (as the libraries read it)
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if key:
            return key
    return secret.encode()


def standard_secret(secret: str) -> str:
    """The secret as a Standard Webhooks library takes it (`Webhook(standard_secret(s))`): the
    secret itself when the platform made it."""
    return SECRET_PREFIX + base64.b64encode(signing_key(secret)).decode()


def standard_signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: `v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(signing_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(secret: str, message_id: str, event: str, body: bytes,
                   timestamp: int | None = None) -> dict[str, str]:
    """Every header of one delivery attempt of `body`: Standard Webhooks' three, the event, and
    the platform's own signature (kept for one release). The one place webhooks are signed:
    each sender (governance decisions, integration webhooks, alert notifications) comes here."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {"Content-Type": "application/json",
            ID_HEADER: message_id,
            TIMESTAMP_HEADER: str(timestamp),
            STANDARD_SIGNATURE_HEADER: standard_signature(secret, message_id, timestamp, body),
            EVENT_HEADER: event,
            DELIVERY_HEADER: message_id,
            SIGNATURE_HEADER: sign(secret, timestamp, body)}


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The platform's own signature (`X-AgentMesh-Signature`), before Standard Webhooks."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: str, header: str, body: bytes, tolerance_seconds: int = 300,
           now: float | None = None) -> bool:
    """True when `header` is a valid signature of `body` made within `tolerance_seconds`."""
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((now or time.time()) - timestamp) > tolerance_seconds:
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


@dataclass
class Delivery:
    url: str
    secret: str
    event: str
    body: bytes
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    attempts: int = 0
    status_code: int = 0
    error: str = ""
    delivered: bool = False


class WebhookSender:
    """Background delivery of signed webhooks, bounded in concurrency and in pending work."""

    def __init__(self, *, egress: EgressPolicy, max_attempts: int = 5, base_delay: float = 0.5,
                 max_delay: float = 30.0, timeout: float = 5.0, concurrency: int = 8,
                 max_pending: int = 10000) -> None:
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.timeout = timeout
        self.max_pending = max_pending
        self.egress = egress  # every attempt is checked by it
        self._concurrency = concurrency
        self._semaphore: asyncio.Semaphore | None = None
        self._client: httpx2.AsyncClient | None = None
        self._tasks: set[asyncio.Task] = set()

    @property
    def pending(self) -> int:
        return len(self._tasks)

    def send(self, url: str, secret: str, event: str, payload: dict[str, Any]) -> Delivery | None:
        """Schedules a delivery on the running event loop and returns at once; None when too
        much is pending already (the event is dropped and logged, never queued without bound)."""
        if len(self._tasks) >= self.max_pending:
            log.warning("webhook queue full (%d pending); dropping %s to %s",
                        len(self._tasks), event, url)
            return None
        delivery = Delivery(url, secret, event, encode(payload).encode())
        task = asyncio.get_running_loop().create_task(self._deliver(delivery))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return delivery

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (exponential, jittered)."""
        delay = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return delay * random.uniform(0.8, 1.2)

    async def attempt(self, delivery: Delivery) -> bool:
        """One attempt (the caller counts it); True when no retry should follow. For callers
        that keep their own schedule (the integration service's outbox in its database)."""
        if self._client is None:
            self._client = self.egress.client(timeout=self.timeout, follow_redirects=False)
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self._concurrency)
        headers = signed_headers(delivery.secret, delivery.id, delivery.event, delivery.body)
        async with self._semaphore:
            try:
                # Only the status matters: the receiver's body is never read.
                async with self._client.stream("POST", delivery.url, content=delivery.body,
                                               headers=headers) as reply:
                    pass
            except httpx2.HTTPError as exc:
                delivery.error = f"{type(exc).__name__}: {exc}"
                return False
            except DomainError as exc:  # the egress guard refused the address: final
                delivery.error = f"{exc.reason}: {exc.message}"
                return True
        delivery.status_code = reply.status_code
        if 200 <= reply.status_code < 300:
            delivery.delivered, delivery.error = True, ""
            return True
        delivery.error = f"HTTP {reply.status_code}"
        return not (reply.status_code >= 500 or reply.status_code in _RETRYABLE)

    async def _deliver(self, delivery: Delivery) -> None:
        try:
            while delivery.attempts < self.max_attempts:
                delivery.attempts += 1
                if await self.attempt(delivery):
                    break
                if delivery.attempts < self.max_attempts:
                    await asyncio.sleep(self.backoff(delivery.attempts))
            if not delivery.delivered:
                log.warning("webhook %s to %s failed after %d attempts: %s", delivery.event,
                            delivery.url, delivery.attempts, delivery.error)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a delivery must never take anything else down
            log.exception("webhook delivery %s crashed", delivery.id)

    async def close(self, drain_seconds: float = 2.0) -> None:
        """Waits up to `drain_seconds` for pending deliveries, cancels the rest."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=drain_seconds)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None
