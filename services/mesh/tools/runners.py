"""Running one tool once: built-in functions, HTTP requests and MCP server tools, each under a
timeout, with outbound traffic through the egress guard and secrets injected only here.

HTTP tools
    `http.url` is a template: `{name}` is replaced by the URL-encoded argument `name`. The other
    arguments go in the query string for GET and DELETE, else as the JSON body — or, when
    `config.body` is set, that object is the body with every string `"{name}"` replaced by the
    argument (keeping its JSON type). Header values may hold `${secrets.<name>}`; `config.auth`
    adds credentials from a secret: `{"type": "bearer", "secret": "<name>"}`,
    `{"type": "header", "header": "X-API-Key", "secret": "<name>"}` or
    `{"type": "basic", "username": "<user>", "secret": "<name>"}`. A JSON object answer is the
    output; any other JSON is `{"result": value}`, text is `{"text": ...}`; an HTTP status of
    400 or more fails the execution.
MCP tools
    The official `mcp` SDK's client over Streamable HTTP calls `mcp.tool_name` on
    `mcp.server_url`. Structured content is the output (`{"result": value}` when it is not an
    object), else the text content as `{"text": ...}`; `isError` fails the execution.

Secret values are never returned: every occurrence in an output or error, in any letter case and
in the forms the request path gives it (percent-encoded, punycode, JSON or repr escaped, base64
as in Basic credentials), is replaced by `***` (`mesh.runtime.redaction`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx2

from agentmesh.tools.v1 import tools_pb2 as pb
from mesh.runtime import documents
from mesh.runtime.egress import EgressPolicy, ResponseTooLarge, read_capped
from mesh.runtime import sandbox
from mesh.runtime.errors import DomainError, InvalidArgument
from mesh.runtime.redaction import SecretMask
from mesh.tools import builtins

DEFAULT_TIMEOUT = 30.0
BUILTIN_TIMEOUT = 10.0
MAX_TIMEOUT = 300.0
SECRET_REF = re.compile(r"\$\{secrets\.([A-Za-z0-9._-]+)\}")
URL_VARIABLE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
WHOLE_VARIABLE = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")
# An output travels on inside other messages (a workflow execution's step states and partial
# results), each level of which counts against protobuf's nesting limit.
OUTPUT_MAX_DEPTH = documents.MAX_DEPTH - 8

log = logging.getLogger("mesh.tools.runners")
Reveal = Callable[[str], Awaitable[str]]
E = pb.ToolExecutionStatus


class ToolFailed(Exception):
    """The tool ran and failed; the message becomes the execution's error."""


@dataclass
class Outcome:
    status: int
    output: dict[str, Any] | None
    error: str
    duration_ms: int
    # A refusal of the platform itself (egress guard): recorded, then answered as an error.
    refusal: DomainError | None = None


def timeout_of(tool: pb.Tool) -> float:
    which = tool.WhichOneof("typed_config")
    if which in ("http", "mcp"):
        duration = getattr(tool, which).timeout
        seconds = duration.seconds + duration.nanos / 1e9
        return min(seconds, MAX_TIMEOUT) if seconds > 0 else DEFAULT_TIMEOUT
    return BUILTIN_TIMEOUT


def secret_names(tool: pb.Tool, config: dict[str, Any]) -> set[str]:
    """Every secret the tool's definition references."""
    text = json.dumps([dict(tool.http.headers), tool.http.url, config])
    names = set(SECRET_REF.findall(text))
    auth = config.get("auth")
    if isinstance(auth, dict) and auth.get("secret"):
        names.add(str(auth["secret"]))
    return names | set(tool.secret_refs)


class _Secrets:
    """The secrets one run reads, and the mask of every form of them (mesh.runtime.redaction)."""

    def __init__(self, reveal: Reveal | None) -> None:
        self.reveal = reveal
        self.values: dict[str, str] = {}
        self.mask = SecretMask()

    async def get(self, name: str) -> str:
        if name not in self.values:
            if self.reveal is None:
                raise ToolFailed(f"secret {name!r} cannot be read here")
            try:
                value = await self.reveal(name)
            except DomainError as exc:
                raise ToolFailed(f"secret {name!r} could not be read: {exc.message}") from None
            self.values[name] = value
            self.mask.add(value)
        return self.values[name]

    async def fill(self, text: str) -> str:
        for name in set(SECRET_REF.findall(text)):
            text = text.replace("${secrets.%s}" % name, await self.get(name))
        return text

    def redact(self, value: Any) -> Any:
        return self.mask.value(value)


def _bind(template: Any, arguments: dict[str, Any]) -> Any:
    if isinstance(template, str):
        whole = WHOLE_VARIABLE.match(template)
        if whole and whole.group(1) in arguments:
            return arguments[whole.group(1)]
        return URL_VARIABLE.sub(lambda m: str(arguments.get(m.group(1), m.group(0))), template)
    if isinstance(template, dict):
        return {k: _bind(v, arguments) for k, v in template.items()}
    if isinstance(template, list):
        return [_bind(v, arguments) for v in template]
    return template


def _as_output(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {"result": value}


async def _run_http(tool: pb.Tool, arguments: dict[str, Any], config: dict[str, Any],
                    policy: EgressPolicy, secrets: _Secrets, timeout: float) -> dict[str, Any]:
    http = tool.http
    used = set(URL_VARIABLE.findall(http.url))
    missing = sorted(used - set(arguments))
    if missing:
        raise ToolFailed(f"the URL needs the arguments {', '.join(missing)}")
    url = URL_VARIABLE.sub(lambda m: quote(str(arguments[m.group(1)]), safe=""), http.url)
    url = await secrets.fill(url)
    rest = {k: v for k, v in arguments.items() if k not in used}
    method = (http.method or "POST").upper()
    headers = {k: await secrets.fill(v) for k, v in http.headers.items()}
    auth = config.get("auth")
    if isinstance(auth, dict) and auth.get("secret"):
        value = await secrets.get(str(auth["secret"]))
        kind = str(auth.get("type", "bearer")).lower()
        if kind == "bearer":
            headers["Authorization"] = f"Bearer {value}"
        elif kind == "header":
            headers[str(auth.get("header") or "X-API-Key")] = value
        elif kind == "basic":
            token = base64.b64encode(f"{auth.get('username', '')}:{value}".encode()).decode()
            secrets.mask.add_derived(token)
            headers["Authorization"] = f"Basic {token}"
        else:
            raise ToolFailed(f"unknown auth type {kind!r}; use bearer, header or basic")
    # A caller's idempotency key (a workflow step's `<execution>:<step>:<attempt>`) goes on to
    # the server, so a step re-run after a crash has its effect once where the server honours it.
    key = _caller_idempotency_key()
    if key and not any(k.lower() == "idempotency-key" for k in headers):
        headers["Idempotency-Key"] = key
    request: dict[str, Any] = {"headers": headers}
    if method in ("GET", "DELETE"):
        if rest:
            request["params"] = {k: v if isinstance(v, str) else json.dumps(v)
                             for k, v in rest.items()}
    elif "body" in config:
        request["json"] = _bind(config["body"], arguments)
    else:
        request["json"] = rest
    async with policy.client(timeout=timeout) as client:
        try:
            async with client.stream(method, url, **request) as response:
                raw = await read_capped(response, policy.max_response_bytes)
        except ResponseTooLarge as exc:
            raise ToolFailed(exc.message) from None
        except httpx2.TooManyRedirects:
            raise ToolFailed(f"more than {policy.max_redirects} redirects") from None
        except (httpx2.HTTPError, httpx2.InvalidURL, ValueError) as exc:  # a URL httpx2 refuses
            raise ToolFailed(f"{type(exc).__name__}: {exc}") from None
    text = raw.decode(response.encoding or "utf-8", errors="replace")
    if response.status_code >= 400:
        raise ToolFailed(f"HTTP {response.status_code}: {text[:300]}")
    try:
        return _as_output(json.loads(text)) if text.strip() else {}
    except ValueError:
        return {"text": text}


def _unwrap(error: BaseException) -> BaseException:
    """The first domain error inside an (anyio) exception group, else the error itself."""
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            found = _unwrap(inner)
            if isinstance(found, DomainError):
                return found
        return _unwrap(error.exceptions[0]) if error.exceptions else error
    return error


def _mcp_client(server_url: str, policy: EgressPolicy, timeout: float):
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    # The SDK follows only same-origin redirects itself; the guarded client checks every
    # connection it opens.
    http_client = policy.client(timeout=timeout, follow_redirects=False)
    return http_client, Client(streamable_http_client(server_url, http_client=http_client),
                               read_timeout_seconds=timeout)


async def list_mcp_tools(server_url: str, policy: EgressPolicy, timeout: float) -> list[str]:
    await policy.check_url(server_url)
    http_client, client = _mcp_client(server_url, policy, timeout)
    try:
        async with http_client, client:
            listed = await client.list_tools()
    except BaseException as exc:  # noqa: BLE001 - anyio groups, transport errors
        inner = _unwrap(exc)
        if isinstance(inner, DomainError | asyncio.CancelledError):
            raise inner from None
        raise ToolFailed(f"MCP server {server_url} did not list its tools: "
                         f"{type(inner).__name__}: {inner}") from None
    return [t.name for t in listed.tools]


async def _run_mcp(tool: pb.Tool, arguments: dict[str, Any], policy: EgressPolicy,
                   timeout: float) -> dict[str, Any]:
    server_url, name = tool.mcp.server_url, tool.mcp.tool_name
    await policy.check_url(server_url)
    http_client, client = _mcp_client(server_url, policy, timeout)
    try:
        async with http_client, client:
            result = await client.call_tool(name, arguments)
    except BaseException as exc:  # noqa: BLE001
        inner = _unwrap(exc)
        if isinstance(inner, DomainError | asyncio.CancelledError):
            raise inner from None
        raise ToolFailed(f"MCP call {name!r} failed: {type(inner).__name__}: {inner}") from None
    texts = [getattr(block, "text", "") for block in result.content or ()]
    if result.is_error:
        raise ToolFailed(" ".join(t for t in texts if t) or f"MCP tool {name!r} failed")
    if result.structured_content is not None:
        return _as_output(result.structured_content)
    text = "\n".join(t for t in texts if t)
    try:
        return _as_output(json.loads(text))
    except ValueError:
        return {"text": text}


async def _dispatch(tool: pb.Tool, arguments: dict[str, Any], config: dict[str, Any],
                    policy: EgressPolicy, secrets: _Secrets, timeout: float,
                    tenant: str) -> dict[str, Any]:
    which = tool.WhichOneof("typed_config")
    if which == "builtin":
        name = tool.builtin.builtin_name
        try:
            if name in builtins.INLINE:
                return builtins.run(name, arguments, config)
            # Off the event loop: the deadline (the caller's wait_for) kills the worker.
            return await sandbox.run("mesh.tools.builtins:run", name, arguments, config,
                                     timeout=timeout, tenant=tenant)
        except builtins.ResultNotRepresentable as exc:
            raise InvalidArgument(str(exc), reason="RESULT_NOT_REPRESENTABLE",
                                  field_violations=[(exc.field, str(exc))]) from None
        except builtins.BuiltinError as exc:
            raise ToolFailed(str(exc)) from None
        except sandbox.SandboxError as exc:
            raise ToolFailed(str(exc)) from None
    if which == "http":
        return await _run_http(tool, arguments, config, policy, secrets, timeout)
    if which == "mcp":
        return await _run_mcp(tool, arguments, policy, timeout)
    raise ToolFailed("the tool has no configuration for its type")


async def run(tool: pb.Tool, arguments: dict[str, Any], *, policy: EgressPolicy,
              reveal: Reveal | None, tenant: str = "") -> Outcome:
    """Runs the tool; never raises for what the tool does (the outcome says it)."""
    from google.protobuf import json_format

    config = json_format.MessageToDict(tool.config)
    secrets = _Secrets(reveal)
    timeout = timeout_of(tool)
    started = time.perf_counter()

    def elapsed() -> int:
        return int((time.perf_counter() - started) * 1000)

    try:
        output = await asyncio.wait_for(
            _dispatch(tool, arguments, config, policy, secrets, timeout, tenant), timeout)
    except TimeoutError:
        return Outcome(E.TOOL_EXECUTION_STATUS_TIMED_OUT, None,
                       f"the tool did not answer within {timeout:g} s", elapsed())
    except ToolFailed as exc:
        return Outcome(E.TOOL_EXECUTION_STATUS_FAILED, None, secrets.redact(str(exc)), elapsed())
    except DomainError as exc:
        secrets.mask.error(exc)
        return Outcome(E.TOOL_EXECUTION_STATUS_FAILED, None, exc.message, elapsed(), refusal=exc)
    except Exception as exc:  # noqa: BLE001 - anything else: its text masked, never a traceback
        problem = secrets.redact(f"{type(exc).__name__}: {exc}")
        # No traceback: its frames' text may hold the request the secrets went into.
        log.warning("tool %s failed unexpectedly: %s", tool.name, problem)
        return Outcome(E.TOOL_EXECUTION_STATUS_FAILED, None, problem, elapsed())
    problem = documents.problem(output, OUTPUT_MAX_DEPTH)
    if problem:  # what a server answered that no answer can carry (NaN, 1e400, too deep)
        return Outcome(E.TOOL_EXECUTION_STATUS_FAILED, None,
                       secrets.redact(f"the tool's output cannot be carried: {problem}"),
                       elapsed())
    return Outcome(E.TOOL_EXECUTION_STATUS_COMPLETED, secrets.redact(output), "", elapsed())


def _caller_idempotency_key() -> str:
    from mesh.runtime.context import current_call, metadata_value

    context = current_call.get()
    return metadata_value(context, "idempotency-key") if context is not None else ""
