"""User-written regular expressions, matched in linear time (RE2), and the JSON Schema keywords
that use them.

Python's `re` backtracks: `^(a+)+$` against 27 `a`s and a `!` takes seconds, doubling with
every extra character, on the event loop that serves every tenant. A tenant writes such a
pattern into a tool's or a workflow's input schema (`pattern`, `patternProperties`, a
`propertyNames` pattern), and anyone calling it stalls the process. RE2 (`google-re2`) matches in
time linear in the text, and refuses what it cannot do that way (backreferences, lookaround):
such a pattern is refused when the schema is saved (400, naming the pattern), never run.

    search(pattern, text)                # PatternError when RE2 cannot run it
    extend(cls)                          # a jsonschema validator class with the keywords below
    cls.check_schema(s, format_checker=FORMAT_CHECKER)   # refuses patterns RE2 cannot run

`extend` returns the class with `pattern`, `patternProperties` and `uniqueItems` (linear instead
of jsonschema's pairwise comparison) replaced and a format checker whose `regex` format compiles
with RE2. `mesh.runtime.schemas` builds every validator of a user schema with it.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import jsonschema
import re2
from jsonschema import FormatChecker, ValidationError

from mesh.runtime import caches

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a refused pattern is the user's answer, not a log line
# RE2 bounds the memory of one compiled pattern (its default is 8 MiB, so is this): a pattern
# that needs more ("a{1000}{1000}") is refused rather than built.
_OPTIONS.max_mem = 8 << 20


class PatternError(ValueError):
    """A pattern RE2 cannot compile: invalid, or a feature matching in linear time excludes."""


@functools.lru_cache(maxsize=2048)
def compile_pattern(pattern: str):
    try:
        return re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        detail = exc.args[0].decode(errors="replace") if exc.args and \
            isinstance(exc.args[0], bytes) else str(exc)
        raise PatternError(f"pattern {pattern!r} is not supported: {detail} (patterns use RE2 "
                           "syntax: no backreferences or lookaround)") from None


def search(pattern: str, text: str) -> bool:
    return compile_pattern(pattern).search(text) is not None


# ---- JSON Schema keywords --------------------------------------------------------------------
def _pattern(validator, pattern, instance, schema):
    if not validator.is_type(instance, "string"):
        return
    try:
        matched = search(pattern, instance)
    except PatternError as exc:  # a schema stored before patterns were checked at save
        yield ValidationError(str(exc))
        return
    if not matched:
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(validator, pattern_properties, instance, schema):
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in pattern_properties.items():
        try:
            compiled = compile_pattern(pattern)
        except PatternError as exc:
            yield ValidationError(str(exc))
            continue
        for key, value in instance.items():
            if compiled.search(key) is not None:
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _canonical(value: Any) -> str:
    """One text per JSON Schema value: 1 and 1.0 are equal, true and 1 are not, key order
    does not count."""
    def normal(node: Any) -> Any:
        if isinstance(node, bool) or node is None or isinstance(node, str):
            return node
        if isinstance(node, float) and node.is_integer():
            return int(node)
        if isinstance(node, dict):
            return {k: normal(v) for k, v in node.items()}
        if isinstance(node, list | tuple):
            return [normal(v) for v in node]
        return node
    return json.dumps(normal(value), sort_keys=True, separators=(",", ":"))


def _unique_items(validator, unique, instance, schema):
    """jsonschema's own compares every pair of unsortable items (objects): quadratic in the
    array, seconds for a 1 MiB body. Canonical texts in a set are linear."""
    if not unique or not validator.is_type(instance, "array"):
        return
    seen: set[str] = set()
    for item in instance:
        text = _canonical(item)
        if text in seen:
            yield ValidationError(f"{instance!r} has non-unique elements"[:300])
            return
        seen.add(text)


def _regex_format(text: object) -> bool:
    if not isinstance(text, str):
        return True
    compile_pattern(text)  # PatternError (a ValueError) marks the format as not met
    return True


# Every format jsonschema knows (what check_schema asserted before), with `regex` on RE2.
FORMAT_CHECKER = FormatChecker()
FORMAT_CHECKER.checks("regex", raises=PatternError)(_regex_format)
_KEYWORDS = {"pattern": _pattern, "patternProperties": _pattern_properties,
             "uniqueItems": _unique_items}


@functools.cache
def extend(cls):
    """`cls` (a jsonschema validator class) with user patterns on RE2."""
    return jsonschema.validators.extend(cls, validators=_KEYWORDS, format_checker=FORMAT_CHECKER)


caches.register_lru("schemas", compile_pattern)
