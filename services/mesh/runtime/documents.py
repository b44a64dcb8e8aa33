"""Documents a client hands over as text (an import file, a template, an OpenAPI description, a
JSON parameter string), parsed in one place with the limits every such parse needs, and the check
that a value can travel as JSON and protobuf at all.

    document = documents.parse(raw, "file")                  # JSON, else YAML
    document = documents.parse(text, "content", syntax="yaml")
    problem = documents.problem(value)                        # None, or what is wrong and where
    content_type, data = documents.dump(document, documents.syntax_for(asked, accept))

Limits, each a 400 naming the field rather than an error deeper in the stack:

* **Nesting depth** at most `MAX_DEPTH` objects/lists. Python's parsers recurse (a few thousand
  `[` were an uncaught `RecursionError`, a 500), and a protobuf `Struct` costs three message
  levels per JSON level against protobuf's decoding limit of 100, so about 32 levels is what a
  `Struct` can carry between services at all.
* **YAML**: safe types only, no aliases (`*a` could expand a small document into a huge one), dates
  stay the strings they were written as (JSON has no date type).
* **Values JSON can carry**: finite numbers (no NaN, no infinity, no integer past a double's
  range), string keys, no other types.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any, Literal

import yaml

from mesh.runtime.errors import invalid_field

MAX_DEPTH = 32
MAX_BYTES = 1024 * 1024
_LARGEST = sys.float_info.max


class _TooDeep(yaml.composer.ComposerError):
    pass


class _Loader(yaml.SafeLoader):
    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed",
                                              self.peek_event().start_mark)
        if self.check_event(yaml.MappingStartEvent, yaml.SequenceStartEvent):
            # Counted before composing recurses, so a deep document never reaches the limit
            # of Python's stack.
            self._depth = getattr(self, "_depth", 0) + 1
            try:
                if self._depth > MAX_DEPTH:
                    raise _TooDeep(None, None, f"nested deeper than {MAX_DEPTH} levels",
                                   self.peek_event().start_mark)
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1
        return super().compose_node(parent, index)


_Loader.add_constructor("tag:yaml.org,2002:timestamp",
                        lambda loader, node: loader.construct_scalar(node))


def problem(value: Any, max_depth: int = MAX_DEPTH) -> str | None:
    """What keeps `value` from being a JSON document of at most `max_depth` levels (and so a
    protobuf Struct), with where it is (`a.b[2]`); None when nothing does. Iterative: the
    value may be as deep as its producer made it."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, where, depth = stack.pop()
        at = f" at {where if len(where) <= 120 else where[:117] + '...'}" if where else ""
        if isinstance(item, dict | list):
            if depth >= max_depth:
                return f"nested deeper than {max_depth} levels{at}"
            if isinstance(item, dict):
                for key, inner in item.items():
                    if not isinstance(key, str):
                        return f"a key that is not a string ({key!r}){at}"
                    stack.append((inner, f"{where}.{key}" if where else key, depth + 1))
            else:
                stack.extend((inner, f"{where}[{index}]", depth + 1)
                             for index, inner in enumerate(item))
        elif isinstance(item, bool) or item is None or isinstance(item, str):
            continue
        elif isinstance(item, float):
            if not math.isfinite(item):
                return f"a number that is not finite ({item}){at}"
        elif isinstance(item, int):
            if abs(item) > _LARGEST:
                return f"a number too large for JSON ({len(str(abs(item)))} digits){at}"
        elif isinstance(item, complex):
            return f"a complex number ({item}){at}"
        else:
            return f"a value JSON cannot carry ({type(item).__name__}){at}"
    return None


def check(value: Any, field: str, max_depth: int = MAX_DEPTH) -> Any:
    """`value` itself, or a 400 naming `field` when it is not a JSON document within the depth."""
    found = problem(value, max_depth)
    if found:
        raise invalid_field(field, f"is not a JSON document this API can take: {found}")
    return value


def parse(raw: str | bytes, field: str, *, syntax: Literal["json", "yaml", "any"] = "any",
          max_bytes: int = MAX_BYTES) -> Any:
    """The document in `raw` (JSON, YAML, or `any`: JSON tried first, YAML being its superset),
    or a 400 naming `field`: too large, not UTF-8, empty, not parsing, too deep, or holding a
    value JSON cannot carry."""
    size = len(raw.encode() if isinstance(raw, str) else raw)
    if size > max_bytes:
        raise invalid_field(field, f"at most {max_bytes} bytes")
    try:
        text = raw if isinstance(raw, str) else raw.decode("utf-8")
    except UnicodeDecodeError:
        raise invalid_field(field, "must be UTF-8 text (JSON or YAML)") from None
    if not text.strip():
        raise invalid_field(field, "is empty")
    document, failure = _NOTHING, ""
    if syntax in ("json", "any"):
        try:
            document = json.loads(text)
        except RecursionError:
            raise invalid_field(field, f"is nested deeper than {MAX_DEPTH} levels") from None
        except ValueError as exc:
            failure = f"does not parse as JSON: {str(exc).splitlines()[0][:200]}"
    if document is _NOTHING and syntax in ("yaml", "any"):
        try:
            document = yaml.load(text, Loader=_Loader)  # noqa: S506 - a safe loader
        except (_TooDeep, RecursionError):  # RecursionError: a backstop, should the parser recurse
            raise invalid_field(field, f"is nested deeper than {MAX_DEPTH} levels") from None
        except yaml.YAMLError as exc:
            what = "is neither JSON nor YAML" if syntax == "any" else "does not parse as YAML"
            failure = f"{what}: {str(exc).splitlines()[0][:200]}"
    if document is _NOTHING:
        raise invalid_field(field, failure)
    return check(document, field)


_NOTHING = object()


def syntax_for(asked: Literal["json", "yaml", ""], accept: str) -> Literal["json", "yaml"]:
    """What an export is written in: what the request's format field asks ("": it does not
    say), else YAML when the `Accept` header names it, else JSON."""
    return asked or ("yaml" if "yaml" in accept.lower() else "json")


def dump(document: Any, syntax: Literal["json", "yaml"]) -> tuple[str, bytes]:
    """(content type, bytes) of a document written for a client to keep: YAML in the order
    the keys were given, or indented JSON; UTF-8 either way."""
    if syntax == "yaml":
        text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
        return "application/yaml", text.encode()
    return "application/json", (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode()
