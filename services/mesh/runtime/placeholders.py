"""`{{name}}` placeholders in user-written text (prompts, templates), checked and rendered safely.

Text is parsed by Jinja2 and accepted only when every expression is a plain variable, optionally
passed through a filter of a fixed list with constant arguments (`{{ name | default("x") }}`):
no attribute or item access, calls, loops, conditions, includes or macros. What is accepted is
then rendered by Jinja2's `ImmutableSandboxedEnvironment` with no globals, as a second wall, so
user text can never run code or read files (`{{ ''.__class__ }}` is refused when it is written).

    names = check("Hello {{ user | title }}")        # ["user"], or PlaceholderError
    render("Hello {{ user | title }}", {"user": "ada"})  # "Hello Ada"
    await render_async(text, values, tenant=...)      # bounded, then inline or in the sandbox

Bounded before it is built: a thousand `{{a}}` with a 100 KB value is 100 MB of text, and
Jinja2 would build all of it before anyone could look. `rendered_size` computes the size a
rendering would have from the placeholders' occurrences and the values' sizes (no rendering),
and `render_async` / `render_tree_async` refuse past `AGENTMESH_RENDER_MAX_BYTES` with
`RenderTooLarge` (the services answer 400 RENDERED_TOO_LARGE naming the limit). A text may hold
at most `AGENTMESH_RENDER_MAX_PLACEHOLDERS` placeholders (`check`, at save), counted before it
is parsed. Texts with more than a few placeholders are rendered in the sandbox
(`mesh.runtime.sandbox`): compiling a long template takes Jinja2 long enough to be felt by every
other request of the process.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from mesh.runtime.sandbox_worker import passable

SAFE_FILTERS = ("upper", "lower", "title", "capitalize", "trim", "tojson", "default")
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
# Rendered where they are asked for when this small (placeholders, estimated bytes); larger
# renderings go to the sandbox.
INLINE_PLACEHOLDERS = 64
INLINE_BYTES = 256 * 1024


@passable
class PlaceholderError(ValueError):
    """User text that is not plain text with allowed placeholders."""


class RenderTooLarge(PlaceholderError):
    """The rendering would be larger than the limit; nothing was built."""

    def __init__(self, limit: int, size: int) -> None:
        super().__init__(f"the rendered text would be about {size} bytes, more than the limit "
                         f"of {limit} bytes (AGENTMESH_RENDER_MAX_BYTES)")
        self.limit = limit
        self.size = size


class TooManyPlaceholders(PlaceholderError):
    def __init__(self, limit: int, count: int) -> None:
        super().__init__(f"{count} placeholders, more than the limit of {limit} "
                         "(AGENTMESH_RENDER_MAX_PLACEHOLDERS)")
        self.limit = limit
        self.count = count


def _finalize(value: Any) -> Any:
    # A non-string value inside longer text is written as JSON (true, not True).
    if isinstance(value, (dict, list, bool)) or value is None:
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class _KeepPlaceholder(Undefined):
    """Preview: a variable without a value stays visible as its placeholder."""

    def __str__(self) -> str:
        return "{{ %s }}" % self._undefined_name


def _environment(undefined: type[Undefined]) -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(autoescape=False, undefined=undefined,
                                        keep_trailing_newline=True, finalize=_finalize)
    env.filters = {name: env.filters[name] for name in SAFE_FILTERS}
    env.tests = {}
    env.globals = {}
    return env


_STRICT = _environment(StrictUndefined)
_PREVIEW = _environment(_KeepPlaceholder)


def _name_of(node: nodes.Node) -> str:
    if isinstance(node, nodes.Name):
        return node.name
    if isinstance(node, nodes.Filter) and node.node is not None:
        if node.name not in SAFE_FILTERS:
            raise PlaceholderError(f"filter {node.name!r} is not allowed; allowed: "
                                   f"{', '.join(SAFE_FILTERS)}")
        if node.kwargs or node.dyn_args or node.dyn_kwargs or \
                not all(isinstance(a, nodes.Const) for a in node.args):
            raise PlaceholderError(f"filter {node.name!r} takes only constant arguments")
        return _name_of(node.node)
    raise PlaceholderError("only {{ name }} placeholders (optionally with a filter) are allowed; "
                           "attribute access, calls and other expressions are refused")


def _grows(node: nodes.Node) -> tuple[int, int]:
    """(factor, constant bytes) by which a placeholder's filters may grow its value's text:
    `tojson` escapes a character into at most 6 and adds quotes; `default` may write its
    constant instead."""
    factor, extra = 1, 0
    while isinstance(node, nodes.Filter):
        if node.name == "tojson":
            factor, extra = factor * 6, extra * 6 + 2
        elif node.name == "default":
            extra += sum(len(str(a.value)) for a in node.args)
        node = node.node
    return factor, extra


@functools.lru_cache(maxsize=4096)
def _occurrences(text: str) -> tuple[tuple[str, int, int], ...]:
    """(name, growth factor, constant bytes) for every placeholder occurrence of `text`."""
    if "{" not in text:
        return ()
    found = []
    for statement in _STRICT.parse(text).body:
        for node in getattr(statement, "nodes", ()):
            if not isinstance(node, nodes.TemplateData):
                found.append((_name_of(node), *_grows(node)))
    return tuple(found)


def count(text: str) -> int:
    """How many placeholders `text` may hold, counted without parsing it (an upper bound)."""
    return text.count("{{")


def _max_placeholders() -> int:
    from mesh.runtime.settings import get_settings

    return get_settings().render_max_placeholders


def _max_bytes() -> int:
    from mesh.runtime.settings import get_settings

    return get_settings().render_max_bytes


def check_count(total: int, limit: int | None = None) -> None:
    limit = _max_placeholders() if limit is None else limit
    if total > limit:
        raise TooManyPlaceholders(limit, total)


def _value_size(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, (dict, list)):
        return len(json.dumps(value, separators=(",", ":"), default=str))
    return 32  # a number, a boolean, null


def rendered_size(text: str, values: dict[str, Any], sizes: dict[str, int] | None = None) -> int:
    """At least the size of `render(text, values)` in characters, computed without rendering
    (each value's size is measured once per name, in `sizes` when given)."""
    sizes = {} if sizes is None else sizes
    total = len(text)
    for name, factor, extra in _occurrences(text):
        if name not in sizes:
            sizes[name] = _value_size(values[name]) if name in values else len(name) + 6
        total += sizes[name] * factor + extra
    return total


@functools.lru_cache(maxsize=4096)
def _parse(text: str) -> tuple[tuple[str, ...], bool]:
    """(names in order of first use, whether the text is exactly one bare placeholder)."""
    if "{" not in text:
        return (), False
    try:
        tree = _STRICT.parse(text)
    except TemplateSyntaxError as exc:
        raise PlaceholderError(f"bad placeholder syntax: {exc.message}") from None
    names: list[str] = []
    exact = False
    for statement in tree.body:
        if not isinstance(statement, nodes.Output):
            raise PlaceholderError("only {{ name }} placeholders are allowed; "
                                   "{% ... %} statements are refused")
        for node in statement.nodes:
            if isinstance(node, nodes.TemplateData):
                continue
            name = _name_of(node)
            if not NAME.match(name):
                raise PlaceholderError(f"placeholder name {name!r} is not letters, digits and _")
            if name not in names:
                names.append(name)
        exact = len(tree.body) == 1 and len(statement.nodes) == 1 and \
            isinstance(statement.nodes[0], nodes.Name)
    return tuple(names), exact


def check(text: str) -> list[str]:
    """The placeholder names `text` uses, in order of first use; PlaceholderError otherwise.
    Where text is saved, `check_count(count(text))` first bounds what parsing costs."""
    return list(_parse(text)[0])


def is_single(text: str) -> str | None:
    """The name when `text` is exactly one bare placeholder (`{{ count }}`), else None."""
    names, exact = _parse(text)
    return names[0] if exact else None


@functools.lru_cache(maxsize=1024)
def _compiled(text: str, keep_missing: bool):
    return (_PREVIEW if keep_missing else _STRICT).from_string(text)


def render(text: str, values: dict[str, Any], *, keep_missing: bool = False) -> str:
    """`text` with its placeholders replaced. Every name must have a value unless `keep_missing`,
    which leaves `{{ name }}` in place."""
    names, _ = _parse(text)
    if not names:
        return text
    try:
        return _compiled(text, keep_missing).render(values)
    except Exception as exc:  # noqa: BLE001 - a filter may refuse a value
        raise PlaceholderError(f"cannot render: {exc}") from None


def render_tree(node: Any, values: dict[str, Any], keep_missing: bool = False) -> Any:
    """Every string of a JSON value rendered (object keys are not); a string that is exactly
    one placeholder becomes the value itself (a number stays a number)."""
    if isinstance(node, dict):
        return {k: render_tree(v, values, keep_missing) for k, v in node.items()}
    if isinstance(node, list):
        return [render_tree(v, values, keep_missing) for v in node]
    if isinstance(node, str):
        single = is_single(node)
        if single is not None:
            return values[single] if single in values else node
        return render(node, values, keep_missing=keep_missing)
    return node


def _strings(node: Any):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def _bound(texts, values: dict[str, Any], limit: int | None) -> tuple[int, int]:
    """(placeholder occurrences, estimated size) of rendering all `texts`; RenderTooLarge
    past the limit, before anything is built."""
    texts = list(texts)
    check_count(sum(count(text) for text in texts))  # before any parsing
    limit = _max_bytes() if limit is None else limit
    sizes: dict[str, int] = {}
    occurrences = size = 0
    for text in texts:
        occurrences += len(_occurrences(text))
        size += rendered_size(text, values, sizes)
        if size > limit:
            raise RenderTooLarge(limit, size)
    return occurrences, size


async def render_async(text: str, values: dict[str, Any], *, keep_missing: bool = False,
                       tenant: str = "", limit: int | None = None,
                       timeout: float | None = None) -> str:
    """`render`, refused past the size limit before it is built, in the sandbox when large."""
    occurrences, size = _bound((text,), values, limit)
    if occurrences <= INLINE_PLACEHOLDERS and size <= INLINE_BYTES:
        return render(text, values, keep_missing=keep_missing)
    return await _in_sandbox("mesh.runtime.placeholders:_render_plain", text, values,
                             keep_missing, tenant=tenant, timeout=timeout)


async def render_tree_async(node: Any, values: dict[str, Any], *, keep_missing: bool = False,
                            tenant: str = "", limit: int | None = None,
                            timeout: float | None = None) -> Any:
    """`render_tree`, bounded like `render_async` over all of its strings together."""
    occurrences, size = _bound(_strings(node), values, limit)
    if occurrences <= INLINE_PLACEHOLDERS and size <= INLINE_BYTES:
        return render_tree(node, values, keep_missing)
    return await _in_sandbox("mesh.runtime.placeholders:render_tree", node, values,
                             keep_missing, tenant=tenant, timeout=timeout)


def _render_plain(text: str, values: dict[str, Any], keep_missing: bool) -> str:
    return render(text, values, keep_missing=keep_missing)


async def _in_sandbox(task: str, *args: Any, tenant: str, timeout: float | None) -> Any:
    from mesh.runtime import sandbox

    try:
        return await sandbox.run(task, *args, tenant=tenant, timeout=timeout)
    except TimeoutError:
        raise PlaceholderError("rendering took longer than its deadline") from None
    except sandbox.SandboxError as exc:
        raise PlaceholderError(f"cannot render: {exc}") from None


def refusal(exc: PlaceholderError, reason: str, field: str = ""):
    """The 400 a service answers for `exc`: RENDERED_TOO_LARGE or TOO_MANY_PLACEHOLDERS with
    the limit in the details, else `reason` (the service's own, e.g. TEMPLATE_RENDER_FAILED)."""
    from mesh.runtime.errors import InvalidArgument

    violations = [(field, str(exc))] if field else []
    if isinstance(exc, RenderTooLarge):
        return InvalidArgument(str(exc), reason="RENDERED_TOO_LARGE",
                               details={"limit_bytes": exc.limit, "estimated_bytes": exc.size},
                               field_violations=violations)
    if isinstance(exc, TooManyPlaceholders):
        return InvalidArgument(str(exc), reason="TOO_MANY_PLACEHOLDERS",
                               details={"limit": exc.limit, "placeholders": exc.count},
                               field_violations=violations)
    return InvalidArgument(str(exc), reason=reason, field_violations=violations)


from mesh.runtime import caches as _caches  # noqa: E402

_caches.register_lru("templates", _parse)
_caches.register_lru("templates", _occurrences)
_caches.register_lru("templates", _compiled)
