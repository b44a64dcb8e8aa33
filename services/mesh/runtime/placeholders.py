"""`{{name}}` placeholders in user-written text (prompts, templates), checked and rendered safely.

Text is parsed by Jinja2 and accepted only when every expression is a plain variable, optionally
passed through a filter of a fixed list with constant arguments (`{{ name | default("x") }}`):
no attribute or item access, calls, loops, conditions, includes or macros. What is accepted is
then rendered by Jinja2's `ImmutableSandboxedEnvironment` with no globals, as a second wall, so
user text can never run code or read files (`{{ ''.__class__ }}` is refused when it is written).

    names = check("Hello {{ user | title }}")        # ["user"], or PlaceholderError
    render("Hello {{ user | title }}", {"user": "ada"})  # "Hello Ada"
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

SAFE_FILTERS = ("upper", "lower", "title", "capitalize", "trim", "tojson", "default")
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


class PlaceholderError(ValueError):
    """User text that is not plain text with allowed placeholders."""


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
    """The placeholder names `text` uses, in order of first use; PlaceholderError otherwise."""
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


from mesh.runtime import caches as _caches  # noqa: E402

_caches.register_lru("templates", _parse)
_caches.register_lru("templates", _compiled)
