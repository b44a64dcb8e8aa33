"""User JSON Schemas: a reference outside the schema is refused when saved and never fetched
when validating, whatever was stored (mesh.runtime.schemas)."""

from __future__ import annotations

import pytest

from mesh.runtime import schemas
from tests.fakes.listener import Listener


@pytest.fixture
def listener():
    server = Listener()
    yield server.port, server.seen
    server.close()


def _remote(port: int) -> list[dict]:
    url = f"http://127.0.0.1:{port}"
    return [
        {"$ref": f"{url}/internal-admin?probe=1"},
        {"type": "object", "properties": {"a": {"$ref": f"{url}/a.json"}}},
        {"$ref": "file:///etc/passwd#/keys"},
        {"$ref": "other.json#/x"},
        {"$dynamicRef": f"{url}/d"},
        {"$id": f"{url}/root", "properties": {"a": {"$ref": "sibling.json"}}},
        {"$schema": f"{url}/meta", "type": "string"},
    ]


def test_references_outside_the_schema_are_refused_when_saved(listener):
    port, seen = listener
    for schema in _remote(port):
        problems = schemas.problems(schema, "input_schema")
        assert problems and all(f.startswith("input_schema.") for f, _ in problems), schema
    assert seen == []


def test_validating_against_a_stored_remote_reference_fetches_nothing(listener):
    """Schemas saved before the check existed: validation refuses, it does not fetch."""
    port, seen = listener
    for schema in _remote(port)[:6]:
        with pytest.raises(schemas.SchemaUnusable) as caught:
            schemas.instance_errors(schema, {"a": 1}, "arguments", "input_schema")
        assert caught.value.reason == "SCHEMA_UNUSABLE"
        assert caught.value.details == {"field": "input_schema"}
    assert seen == []


def test_local_references_resolve():
    schema = {"type": "object", "required": ["a"],
              "properties": {"a": {"$ref": "#/$defs/name"}, "b": {"$ref": "#tag"}},
              "$defs": {"name": {"type": "string"}, "t": {"$anchor": "tag", "type": "integer"}}}
    assert schemas.problems(schema, "input_schema") == []
    assert schemas.instance_errors(schema, {"a": 1, "b": "x"}, "arguments", "input_schema") == [
        ("arguments.a", "1 is not of type 'string'"), ("arguments.b", "'x' is not of type 'integer'")]
    draft7 = {"$schema": "http://json-schema.org/draft-07/schema#",
              "definitions": {"n": {"type": "number"}}, "properties": {"n": {"$ref": "#/definitions/n"}}}
    assert schemas.problems(draft7, "s") == []
    assert schemas.instance_errors(draft7, {"n": "x"}, "inputs", "s")[0][0] == "inputs.n"
    # A `$ref` inside data (a default, an example) is not a reference.
    assert schemas.problems({"default": {"$ref": "http://x"}}, "s") == []


@pytest.mark.parametrize("schema, field", [
    ({"properties": {"a": {"$ref": "#/$defs/missing"}}}, "s.properties.a.$ref"),
    ({"$ref": "#nowhere"}, "s.$ref"),
    ({"type": "strin"}, "s.type"),
    ({"$schema": 5}, "s.$schema"),
])
def test_broken_schemas_name_the_field(schema, field):
    assert [f for f, _ in schemas.problems(schema, "s")] == [field]
