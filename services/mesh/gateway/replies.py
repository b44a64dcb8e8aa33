"""Envoy's own replies (no route, a refused token, a scope missing, an upstream down, a body too
large) in the one error envelope `{error, message, details, correlation_id, timestamp}`, with
the status's name as `error` and Envoy's inside never shown for a 5xx."""

from __future__ import annotations

from typing import Any

from mesh.gateway.lua import UNDECLARED_METHOD_HEADER

_ERROR_NAMES = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED", 408: "DEADLINE_EXCEEDED", 409: "ALREADY_EXISTS",
    413: "PAYLOAD_TOO_LARGE", 415: "UNSUPPORTED_MEDIA_TYPE", 429: "RATE_LIMIT_EXCEEDED",
    500: "INTERNAL", 501: "UNIMPLEMENTED",
    502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}
_HIDDEN_5XX = {
    500: "internal error; quote the correlation id to support",
    502: "the service is unavailable; retry later",
    503: "the service is unavailable; retry later",
    504: "the service did not answer in time; retry later",
}


def _query_method_mapper(body, status_is) -> dict[str, Any]:
    """Envoy answers a QUERY request without Content-Type with 400 before any filter runs (RFC
    10008 asks servers to fail it). No route accepts QUERY, so it becomes the 405 every other
    undeclared method gets; the Lua filter adds `Allow` for the path passed in this header."""
    return {
        "filter": {"and_filter": {"filters": [status_is(400), {"header_filter": {"header": {
            "name": ":method", "string_match": {"exact": "QUERY"}}}}]}},
        "status_code": 405,
        "headers_to_add": [{"header": {"key": UNDECLARED_METHOD_HEADER, "value": "%REQ(:PATH)%"},
                            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}],
        "body_format_override": body("METHOD_NOT_ALLOWED", "method QUERY is not allowed here"),
    }


def local_reply_config() -> dict[str, Any]:
    def body(error: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"json_format": {
            "error": error,
            "message": message,
            "details": details or {},
            "correlation_id": "%REQ(X-CORRELATION-ID)%",
            "request_id": "%REQ(X-CORRELATION-ID)%",  # seed 000's name for it
            # Second precision, as gateway.lua writes it for service errors.
            "timestamp": "%START_TIME(%Y-%m-%dT%H:%M:%SZ)%",
        }, "content_type": "application/json"}

    def status_is(code: int) -> dict[str, Any]:
        return {"status_code_filter": {"comparison": {
            "op": "EQ", "value": {"default_value": code, "runtime_key": f"agentmesh.reply.{code}"}}}}

    mappers = [_query_method_mapper(body, status_is), {
        "filter": status_is(403),
        "body_format_override": body(
            "PERMISSION_DENIED", "this operation needs scope %METADATA(ROUTE:agentmesh:scope)%",
            {"required_scope": "%METADATA(ROUTE:agentmesh:scope)%",
             "method": "%METADATA(ROUTE:agentmesh:method)%"}),
    }]
    for code, name in _ERROR_NAMES.items():
        if code == 403:
            continue
        # Envoy's own 5xx texts ("upstream connect error or disconnect/reset before headers.
        # reset reason: ...") describe the inside of the gateway: never shown to clients.
        message = _HIDDEN_5XX.get(code, "%LOCAL_REPLY_BODY%")
        mappers.append({"filter": status_is(code), "body_format_override": body(name, message)})
    return {"mappers": mappers, "body_format": body("ERROR", "%LOCAL_REPLY_BODY%")}
