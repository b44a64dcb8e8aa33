"""The client's exceptions: one class per kind of failure, read from the API's one JSON error
envelope (`{error, message, details, correlation_id}`) and the HTTP status.

    MeshError
    ├── Unreachable                the mesh did not answer (connection refused, timeout, ...)
    └── ApiError                   any non-2xx answer; .status .error .message .details
        ├── InvalidArgument        400 (FailedPrecondition: 400 with FAILED_PRECONDITION)
        ├── Unauthenticated        401 (log in again)
        ├── PermissionDenied       403
        ├── NotFound               404
        ├── MethodNotAllowed       405 (the contract binds no route)
        ├── Conflict               409 (exists already, or changed concurrently)
        ├── PayloadTooLarge        413
        ├── RateLimited            429; .retry_after in seconds (Retry-After, RetryInfo)
        ├── ServerError            5xx
        │   ├── Unimplemented      501
        │   ├── Unavailable        502, 503
        │   └── DeadlineExceeded   504
"""

from __future__ import annotations

import re
from typing import Any

JSON = dict[str, Any]


class MeshError(Exception):
    """Every error of the client."""


class Unreachable(MeshError):
    """No answer from the mesh at `url`."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach the mesh at {url}: {reason}")
        self.url, self.reason = url, reason


class ApiError(MeshError):
    """A non-2xx answer, with the API's error envelope."""

    def __init__(self, status: int, error: str, message: str, details: JSON | None = None,
                 correlation_id: str = "", headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {error}: {message}")
        self.status, self.error, self.message = status, error, message
        self.details = details or {}
        self.correlation_id = correlation_id
        self.headers = headers or {}


class InvalidArgument(ApiError):
    """400: the request is wrong; `details` names the fields where the API says so."""


class FailedPrecondition(InvalidArgument):
    """400 FAILED_PRECONDITION: right request, wrong moment (not active yet, ...)."""


class Unauthenticated(ApiError):
    """401: no credentials, or expired ones that could not be refreshed."""


class PermissionDenied(ApiError):
    """403: the caller's role or API key scopes do not allow it."""


class NotFound(ApiError):
    """404."""


class MethodNotAllowed(ApiError):
    """405: the contract has no route for it."""


class Conflict(ApiError):
    """409: it exists already, or changed since it was read."""


class PayloadTooLarge(ApiError):
    """413."""


class RateLimited(ApiError):
    """429: too many requests; `retry_after` says how many seconds to wait (None: unknown)."""

    @property
    def retry_after(self) -> float | None:
        return retry_delay(self.headers, self.details)


class ServerError(ApiError):
    """5xx: the mesh failed; the correlation id finds it in the logs."""


class Unimplemented(ServerError):
    """501."""


class Unavailable(ServerError):
    """502, 503: a service is down or restarting; retried for idempotent calls."""


class DeadlineExceeded(ServerError):
    """504."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: InvalidArgument, 401: Unauthenticated, 403: PermissionDenied, 404: NotFound,
    405: MethodNotAllowed, 409: Conflict, 413: PayloadTooLarge, 429: RateLimited,
    501: Unimplemented, 502: Unavailable, 503: Unavailable, 504: DeadlineExceeded,
}
_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)s?\s*$")


def error_class(status: int, error: str = "") -> type[ApiError]:
    if status == 400 and error == "FAILED_PRECONDITION":
        return FailedPrecondition
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return ServerError if status >= 500 else ApiError


def make_error(status: int, error: str, message: str, details: JSON | None = None,
               correlation_id: str = "", headers: dict[str, str] | None = None) -> ApiError:
    return error_class(status, error)(status, error, message, details, correlation_id, headers)


def retry_delay(headers: dict[str, str], details: JSON) -> float | None:
    """Seconds to wait: the Retry-After header, else a `retry_after` (seconds) or a
    `google.rpc.RetryInfo`-style `retry_delay` ("1.5s") in the details."""
    after = (headers or {}).get("retry-after", "")
    if after.strip().replace(".", "", 1).isdigit():
        return float(after)
    details = details or {}
    # A RetryInfo detail may also sit one level down (`{"retry_info": {"retry_delay": "2s"}}`).
    nested = [v for v in details.values() if isinstance(v, dict)]
    for value in [d.get(k) for d in (details, *nested)
                  for k in ("retry_after", "retry_delay", "retryDelay")]:
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str) and (match := _DURATION.match(value)):
            return float(match.group(1))
        if isinstance(value, dict) and "seconds" in value:
            return float(value.get("seconds") or 0) + float(value.get("nanos") or 0) / 1e9
    return None
