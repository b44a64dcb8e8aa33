"""Workflow expressions: JMESPath over the execution's document, and `{{ }}` text templates.

Expressions are JMESPath (https://jmespath.org) evaluated over one document:

    {"inputs": <the execution's inputs>,
     "steps":  {<step id>: {"output": <its output>, "status": "COMPLETED"|"SKIPPED"|...}},
     "args":   <the step's own resolved inputs> (transform and condition expressions only)}

so `steps.fetch.output.items[0].url`, `inputs.topic`, `length(steps.search.output.hits)` and
`{total: sum(args.prices), n: length(args.prices)}` are expressions. Two conveniences on top of
JMESPath: a bare number after a comparison operator is a number (`steps.score.output.value >
0.8`, where JMESPath wants `` `0.8` ``), and a string that holds `{{ expression }}` is a template:
alone it yields the expression's value, inside other text its JSON/text rendering. Step ids with
`-` must be quoted in JMESPath: `steps."fetch-page".output`.

Where they run. A JMESPath expression can be written to run for minutes and to build a value
of gigabytes (`inputs.x.[@,@][]` repeated: each repeat doubles it). The engine calls
`evaluate_async` / `render_text_async`, which run an expression inline only when its cost is
bounded by the size of the document (`is_bounded`: paths, indexes, comparisons, `&&`/`||`/`!`,
pipes, literals and a few functions of one value, such as `length`), and otherwise in the
sandbox (`mesh.runtime.sandbox`), where the step's timeout kills it. Text rendered from
several placeholders is refused past `max_bytes` (`AGENTMESH_RENDER_MAX_BYTES`) as it is
built, never after.

This module imports only jmespath and the standard library at import time: the sandbox's
workers import it.
"""

from __future__ import annotations

import contextvars
import functools
import json
import re
from typing import Any

import jmespath

from mesh.runtime.convert import plain
from mesh.runtime.sandbox_worker import passable

_REF = re.compile(r'\bsteps\s*\.\s*(?:"([^"]+)"|([A-Za-z_][A-Za-z0-9_]*))')
_BARE_NUMBER = re.compile(r"(<=|>=|==|!=|<|>)\s*(-?\d+(?:\.\d+)?)(?![\w`.])")
TEMPLATE = re.compile(r"\{\{\s*(.+?)\s*\}\}")
MAX_RENDERED_BYTES = 1024 * 1024  # the default of AGENTMESH_RENDER_MAX_BYTES

# JMESPath nodes whose cost is bounded by the document: they walk into it, compare, or make a
# scalar. What builds new values (projections, flatten, slices, multi-selects) is not here: a
# chain of them multiplies the document.
_BOUNDED_NODES = frozenset({
    "field", "subexpression", "index_expression", "index", "current", "identity", "literal",
    "comparator", "and_expression", "or_expression", "not_expression", "pipe"})
# Multi-selects build a value of references into the document, in time bounded by the
# expression; what they build grows with a chain of them. A run in the call that starts it
# (mesh.workflows.inline) evaluates them on the loop and measures each value they built.
_BUILDING_NODES = frozenset({"multi_select_dict", "multi_select_list", "key_val_pair"})
# Set while such a run evaluates its expressions.
BUILDING_MEASURED: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "building_measured", default=False)
# Functions of one value whose result is no larger than their argument.
_BOUNDED_FUNCTIONS = frozenset({
    "abs", "avg", "ceil", "contains", "ends_with", "floor", "join", "keys", "length", "max",
    "min", "not_null", "reverse", "sort", "starts_with", "sum", "to_number", "to_string",
    "type", "values"})


@passable
class ExpressionError(ValueError):
    pass


@functools.lru_cache(maxsize=4096)
def compile_expression(text: str):
    source = _BARE_NUMBER.sub(lambda m: f"{m.group(1)} `{m.group(2)}`", text.strip())
    try:
        return jmespath.compile(source)
    except jmespath.exceptions.JMESPathError as exc:
        raise ExpressionError(f"{text!r} is not a valid expression: {exc}") from None


def _bounded_node(node: Any, building: bool = False) -> bool:
    if not isinstance(node, dict):
        return True  # a slice's bounds and other plain values
    kind = node.get("type")
    children = node.get("children", ())
    if kind == "function_expression":
        if node.get("value") not in _BOUNDED_FUNCTIONS:
            return False
    elif kind in _BUILDING_NODES:
        if not building:
            return False
    elif kind not in _BOUNDED_NODES:
        return False
    if building and not _builds_safely(node, kind, children):
        return False
    return all(_bounded_node(child, building) for child in children)


# What walks a value whole (serializes or compares it deeply): given a value a multi-select
# built, it walks every reference in it as often as it occurs.
_DEEP_FUNCTIONS = frozenset({"to_string", "contains"})
# Nodes that only walk into a value.
_WALKING_NODES = frozenset({"field", "subexpression", "index_expression", "index", "current",
                            "identity", "literal"})


def _builds(node: Any) -> bool:
    return isinstance(node, dict) and (node.get("type") in _BUILDING_NODES or any(
        _builds(child) for child in node.get("children", ())))


def _walks_only(node: Any) -> bool:
    return not isinstance(node, dict) or (node.get("type") in _WALKING_NODES and all(
        _walks_only(child) for child in node.get("children", ())))


def _builds_safely(node: dict, kind: str, children: tuple | list) -> bool:
    """What a multi-select builds stays about (expression size) x (document size): it is not
    walked whole, and nothing builds again on top of it (`[@,@].[@,@]...`, each step doubling
    by reference, would build 2^n in n steps)."""
    if kind == "comparator" or (kind == "function_expression"
                                and node.get("value") in _DEEP_FUNCTIONS):
        return not any(_builds(child) for child in children)
    if kind in ("subexpression", "pipe", "index_expression"):  # a chain, left to right
        built = False
        for child in children:
            if built and not _walks_only(child):
                return False
            built = built or _builds(child)
    return True


@functools.lru_cache(maxsize=4096)
def _bounded_expression(text: str, building: bool = False) -> bool:
    try:
        return _bounded_node(compile_expression(text).parsed, building)
    except ExpressionError:
        return True  # fails at once, wherever it runs


def is_bounded(text: str, *, building: bool = False) -> bool:
    """Whether every expression in `text` (an expression or a `{{ }}` template) costs at most
    about the size of the document, so it may run on the event loop. `building`: multi-selects
    too, for a caller that measures what they build (BUILDING_MEASURED)."""
    matches = [m.group(1) for m in TEMPLATE.finditer(text)]
    return all(_bounded_expression(e, building) for e in (matches or [text]))


def expanded_size(value: Any, limit: int) -> int:
    """About the bytes of `value` as JSON, each reference counted as often as it occurs (what
    writing it costs), counted until past `limit`."""
    size = 0
    pending = [value]
    while pending and size <= limit:
        item = pending.pop()
        if isinstance(item, dict):
            size += 2 + sum(len(key) + 4 for key in item)
            pending.extend(item.values())
        elif isinstance(item, list):
            size += 2 + len(item)
            pending.extend(item)
        elif isinstance(item, str):
            size += len(item) + 2
        else:
            size += 8
    return size


def evaluate(text: str, document: dict[str, Any], max_bytes: int = MAX_RENDERED_BYTES) -> Any:
    """The value of an expression or template string over the document."""
    matches = list(TEMPLATE.finditer(text))
    if matches:
        if len(matches) == 1 and matches[0].group(0) == text.strip():
            return _search(matches[0].group(1), document)
        return _render(text, lambda expression: _search(expression, document), max_bytes)
    return _search(text, document)


def _render(template: str, value_of, max_bytes: int) -> str:
    """`template` with each `{{ }}` replaced by `value_of(inner text)` as text (None: left as
    written), refused as soon as the text would pass `max_bytes`."""
    parts: list[str] = []
    size = 0
    position = 0
    for match in TEMPLATE.finditer(template):
        literal = template[position:match.start()]
        value = value_of(match.group(1))
        piece = match.group(0) if value is _KEEP else as_text(value)
        size += len(literal) + len(piece)
        if size > max_bytes:
            raise ExpressionError(f"the rendered text would be larger than {max_bytes} bytes "
                                  "(AGENTMESH_RENDER_MAX_BYTES)")
        parts += (literal, piece)
        position = match.end()
    parts.append(template[position:])
    return "".join(parts)


_KEEP = object()


def _search(text: str, document: dict[str, Any]) -> Any:
    try:
        return compile_expression(text).search(document)
    except jmespath.exceptions.JMESPathError as exc:
        raise ExpressionError(f"{text!r} failed: {exc}") from None


def as_text(value: Any) -> str:
    """A value inside text: strings as they are, the rest as JSON. Numbers travel as doubles
    (protobuf Struct), so a whole number is written as one: `42`, never `42.0`."""
    if isinstance(value, str):
        return value
    return json.dumps(plain(value))


def render_text(template: str, values: dict[str, Any],
                max_bytes: int = MAX_RENDERED_BYTES) -> str:
    """`{{name}}` placeholders of a prompt or message replaced by the step's inputs."""
    def one(name: str) -> Any:
        if name in values:
            return values[name]
        try:
            value = _search(name, {"args": values, **values})
        except ExpressionError:
            return _KEEP
        return _KEEP if value is None else value  # not an input: left as written
    return _render(template, one, max_bytes)


def references(text: str) -> set[str]:
    return {quoted or plain for quoted, plain in _REF.findall(text)}


# ---- where they run ------------------------------------------------------------------------
def _max_bytes() -> int:
    from mesh.runtime.settings import get_settings

    return get_settings().render_max_bytes


async def evaluate_async(text: str, document: dict[str, Any], *, timeout: float | None = None,
                         tenant: str = "") -> Any:
    """`evaluate`, inline when bounded, else in the sandbox under `timeout` (the sandbox's
    default when None): TimeoutError when it passes, ExpressionError for what went wrong."""
    if is_bounded(text, building=BUILDING_MEASURED.get()):
        return evaluate(text, document, _max_bytes())
    from mesh.runtime import sandbox

    try:
        return await sandbox.run("mesh.workflows.expressions:evaluate", text, document,
                                 _max_bytes(), timeout=timeout, tenant=tenant)
    except sandbox.SandboxError as exc:
        raise ExpressionError(f"{text[:200]!r}: {exc}") from None


async def render_text_async(template: str, values: dict[str, Any], *,
                            timeout: float | None = None, tenant: str = "") -> str:
    """`render_text`, inline when every placeholder is an input or a bounded expression."""
    if all(m.group(1).strip() in values or _bounded_expression(m.group(1).strip())
           for m in TEMPLATE.finditer(template)):
        return render_text(template, values, _max_bytes())
    from mesh.runtime import sandbox

    try:
        return await sandbox.run("mesh.workflows.expressions:render_text", template, values,
                                 _max_bytes(), timeout=timeout, tenant=tenant)
    except sandbox.SandboxError as exc:
        raise ExpressionError(f"rendering {template[:200]!r}: {exc}") from None


from mesh.runtime import caches as _caches  # noqa: E402

_caches.register_lru("expressions", compile_expression)
_caches.register_lru("expressions", _bounded_expression)
