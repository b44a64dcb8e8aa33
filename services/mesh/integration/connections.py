"""API connections: checks, and what a connection gives an HTTP tool or a request.

A connection never holds a credential, only the name of a master-data secret. For a tool it
becomes the tools service's own HTTP options (`config.auth` with the secret's name, headers),
so the secret is read only when the tool runs; for a connection test or a sync, the value is
read through masterdata's internal RevealSecret and never returned.
"""

from __future__ import annotations

import base64
import re
from typing import Any
from urllib.parse import urlsplit

from mesh.runtime.errors import invalid_field

AUTH_TYPES = ("AUTH_TYPE_NONE", "AUTH_TYPE_API_KEY", "AUTH_TYPE_BEARER", "AUTH_TYPE_BASIC")
UNSUPPORTED = ("AUTH_TYPE_OAUTH2", "AUTH_TYPE_AWS_SIGV4")
_HEADER = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")
_CREDENTIAL_HEADERS = {"authorization", "proxy-authorization", "cookie", "x-api-key"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


# A stored URL has at most 2000 characters; one joined from a base URL and a path (each up to
# 2000, as the contract bounds them) at most twice that.
URL_MAX = 2000
JOINED_MAX = 2 * URL_MAX + 1


def check_url(url: Any, field: str, max_length: int = URL_MAX) -> str:
    if not isinstance(url, str) or not url:
        raise invalid_field(field, "is required")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > max_length:
        raise invalid_field(field, "must be an absolute http or https URL")
    host = parts.hostname
    if len(host) > 253 or any(not 0 < len(label) <= 63 for label in host.rstrip(".").split(".")):
        # what the resolver cannot encode (IDNA: labels of 1-63 characters) is not a host
        raise invalid_field(field, "has a host name that is not valid")
    if parts.username or parts.password:
        raise invalid_field(field, "must not carry credentials; use secret_ref")
    return url


def check(entity: dict[str, Any]) -> dict[str, Any]:
    """A connection's fields, checked and normalised (create and import)."""
    name = entity.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise invalid_field("name", "1-100 letters, digits, '.', '_' or '-'")
    unknown = [k for k in entity if k not in ("name", "base_url", "auth_type", "secret_ref",
                                              "headers", "auth_param", "id")]
    if unknown:
        raise invalid_field(str(unknown[0]), "unknown field")
    base_url = check_url(entity.get("base_url"), "base_url")
    auth_type = entity.get("auth_type") or "AUTH_TYPE_NONE"
    if auth_type == "AUTH_TYPE_UNSPECIFIED":
        auth_type = "AUTH_TYPE_NONE"
    if auth_type in UNSUPPORTED:
        raise invalid_field("auth_type", f"{auth_type} is not supported yet; use one of "
                            f"{', '.join(AUTH_TYPES)}")
    if auth_type not in AUTH_TYPES:
        raise invalid_field("auth_type", f"one of {', '.join(AUTH_TYPES)}")
    secret_ref = entity.get("secret_ref") or ""
    if not isinstance(secret_ref, str) or len(secret_ref) > 200:
        raise invalid_field("secret_ref", "a secret's name, at most 200 characters")
    if auth_type != "AUTH_TYPE_NONE" and not secret_ref:
        raise invalid_field("secret_ref", f"{auth_type} needs the secret that holds the "
                            "credentials")
    auth_param = entity.get("auth_param") or ""
    if not isinstance(auth_param, str) or len(auth_param) > 200:
        raise invalid_field("auth_param", "at most 200 characters")
    if auth_type == "AUTH_TYPE_API_KEY" and auth_param and not _HEADER.match(auth_param):
        raise invalid_field("auth_param", "must be a header name")
    headers = entity.get("headers") or {}
    if not isinstance(headers, dict) or len(headers) > 50:
        raise invalid_field("headers", "an object of at most 50 header: value")
    for key, value in headers.items():
        if not _HEADER.match(str(key)):
            raise invalid_field(f"headers.{key}", "not a valid header name")
        if str(key).lower() in _CREDENTIAL_HEADERS:
            raise invalid_field(f"headers.{key}", "credentials belong in secret_ref, not in "
                                "headers")
        if not isinstance(value, str) or len(value) > 1000 or "\n" in value or "\r" in value:
            raise invalid_field(f"headers.{key}", "a single-line string of at most 1000 "
                                "characters")
    out = {"name": name, "base_url": base_url, "auth_type": auth_type, "secret_ref": secret_ref,
           "auth_param": auth_param, "headers": dict(sorted(headers.items()))}
    return out


def tool_auth(connection: dict[str, Any]) -> dict[str, Any] | None:
    """The tools service's `config.auth` for the connection (by secret name)."""
    kind, secret = connection["auth_type"], connection["secret_ref"]
    if kind == "AUTH_TYPE_BEARER":
        return {"type": "bearer", "secret": secret}
    if kind == "AUTH_TYPE_API_KEY":
        return {"type": "header", "header": connection["auth_param"] or "X-API-Key",
                "secret": secret}
    if kind == "AUTH_TYPE_BASIC":
        return {"type": "basic", "username": connection["auth_param"], "secret": secret}
    return None


def request_headers(connection: dict[str, Any], secret_value: str | None) -> dict[str, str]:
    headers = dict(connection["headers"])
    auth = tool_auth(connection)
    if auth is None or secret_value is None:
        return headers
    if auth["type"] == "bearer":
        headers["Authorization"] = f"Bearer {secret_value}"
    elif auth["type"] == "header":
        headers[auth["header"]] = secret_value
    else:
        token = base64.b64encode(f"{auth['username']}:{secret_value}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    return headers


def join(base_url: str, path: str) -> str:
    if not path:
        return base_url
    if path.startswith(("http://", "https://")):
        return path
    return base_url.rstrip("/") + "/" + path.lstrip("/")
