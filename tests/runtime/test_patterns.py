"""User-written patterns on RE2 (mesh.runtime.patterns): linear-time matching, refusal at save of
what RE2 cannot do, and JSON Schema keywords that stay linear."""

from __future__ import annotations

import time

import jsonschema
import pytest

from mesh.runtime import patterns


def test_a_backtracking_pattern_matches_in_linear_time():
    schema = {"type": "string", "pattern": "^(a+)+$"}
    patterns.check_schema(schema)
    started = time.perf_counter()
    errors = list(patterns.validator(schema).iter_errors("a" * 100_000 + "!"))
    assert time.perf_counter() - started < 0.5
    assert [e.validator for e in errors] == ["pattern"]
    assert not list(patterns.validator(schema).iter_errors("aaaa"))


@pytest.mark.parametrize("schema", [
    {"pattern": "(a)\\1"},                               # backreference
    {"pattern": "(?=a)b"},                               # lookahead
    {"patternProperties": {"(?<!x)y": {}}},              # lookbehind, as a property pattern
    {"properties": {"s": {"pattern": "["}}},             # invalid
    {"pattern": "a{1000}{1000}"},                        # more than RE2's memory bound
])
def test_what_re2_cannot_run_is_refused_at_save(schema):
    with pytest.raises(jsonschema.SchemaError):
        patterns.check_schema(schema)


def test_pattern_properties_and_unique_items():
    validator = patterns.validator({
        "patternProperties": {"^n_": {"type": "number"}},
        "properties": {"tags": {"uniqueItems": True}}})
    assert [e.message for e in validator.iter_errors({"n_a": "x", "b": "y"})] == [
        "'x' is not of type 'number'"]
    assert list(validator.iter_errors({"tags": [{"a": 1}, {"a": 1.0}]}))  # 1 == 1.0
    assert not list(validator.iter_errors({"tags": [1, True, {"a": 1}, {"a": 2}]}))
    # Quadratic in jsonschema's own implementation for objects: linear here.
    started = time.perf_counter()
    assert not list(validator.iter_errors({"tags": [{"i": i} for i in range(50_000)]}))
    assert time.perf_counter() - started < 3
