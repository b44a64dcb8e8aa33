"""User-written patterns on RE2 (mesh.runtime.patterns) in user JSON Schemas (mesh.runtime.schemas):
linear-time matching, refusal at save of what RE2 cannot do, JSON Schema keywords that stay
linear, and schemas with references validated in the sandbox."""

from __future__ import annotations

import time

import pytest

from mesh.runtime import schemas


def test_a_backtracking_pattern_matches_in_linear_time():
    schema = {"type": "string", "pattern": "^(a+)+$"}
    assert schemas.problems(schema, "input_schema") == []
    started = time.perf_counter()
    errors = list(schemas.validator(schema).iter_errors("a" * 100_000 + "!"))
    assert time.perf_counter() - started < 0.5
    assert [e.validator for e in errors] == ["pattern"]
    assert not list(schemas.validator(schema).iter_errors("aaaa"))


@pytest.mark.parametrize("schema", [
    {"pattern": "(a)\\1"},                               # backreference
    {"pattern": "(?=a)b"},                               # lookahead
    {"patternProperties": {"(?<!x)y": {}}},              # lookbehind, as a property pattern
    {"properties": {"s": {"pattern": "["}}},             # invalid
    {"pattern": "a{1000}{1000}"},                        # more than RE2's memory bound
])
def test_what_re2_cannot_run_is_refused_at_save(schema):
    problems = schemas.problems(schema, "input_schema")
    assert problems and problems[0][0].startswith("input_schema"), problems


def test_pattern_properties_and_unique_items():
    validator = schemas.validator({
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


# anyOf of two branches that both recurse: every level doubles the work (depth 16: ~17 s).
EXPONENTIAL = {"$defs": {"n": {"anyOf": [
    {"type": "array", "items": {"$ref": "#/$defs/n"}, "minItems": 2},
    {"type": "array", "items": {"$ref": "#/$defs/n"}}]}}, "$ref": "#/$defs/n"}


def _nested(depth: int):
    value = "leaf"
    for _ in range(depth):
        value = [value]
    return value


def test_a_schema_with_references_is_validated_in_the_sandbox_under_a_deadline():
    import asyncio

    from mesh.runtime import sandbox

    assert schemas.is_bounded({"properties": {"a": {"anyOf": [{"type": "string"}]}}})
    assert not schemas.is_bounded(EXPONENTIAL)

    async def scenario():
        gaps, last = [], time.perf_counter()

        async def ticker():
            nonlocal last
            last = time.perf_counter()
            while True:
                await asyncio.sleep(0.01)
                gaps.append(time.perf_counter() - last)
                last = time.perf_counter()
        try:
            # Small: validated in the sandbox, the same answer as inline.
            assert await schemas.instance_errors_async(EXPONENTIAL, _nested(3), "arguments",
                                                        tenant="t") == \
                schemas.instance_errors(EXPONENTIAL, _nested(3), "arguments")
            ticking = asyncio.create_task(ticker())
            started = time.monotonic()
            errors = await schemas.instance_errors_async(EXPONENTIAL, _nested(40), "arguments",
                                                          tenant="t", timeout=1)
            took = time.monotonic() - started
            ticking.cancel()
            return errors, took, max(gaps)
        finally:
            await sandbox.shutdown()

    errors, took, worst_gap = asyncio.run(scenario())
    assert errors == [("arguments", "validating against the schema took longer than its "
                                    "deadline")]
    assert took < 3 and worst_gap < 0.2, (took, worst_gap)
