"""JSON Schemas users write (a tool's input and output schema, a workflow's input and output
schema, a skill's parameters): checked when they are saved, and validated with validators that
never fetch anything.

python-jsonschema resolves a `$ref` it does not hold by retrieving it: an HTTP GET of any URL
(past the egress guard, with no timeout) or a read of a local `file:` path. A user schema was
therefore a way to make the server call an internal address, and an oracle on local files. Here:

* `problems(schema, field)` refuses, when the schema is saved, a schema its metaschema refuses
  and every `$ref` (`$dynamicRef`, `$recursiveRef`) that is not a fragment of the schema itself
  (`#/$defs/name`, `#/definitions/name`, `#anchor`) or that points nowhere in it.
* `validator(schema)` builds the validator over `NO_RETRIEVAL`, a registry with nothing to
  retrieve with: a reference outside the schema is unresolvable, never fetched, whatever was
  stored before these checks existed; validating against one is `SchemaUnusable` (a 409 naming
  the field), not a traceback.
* User patterns (`pattern`, `patternProperties`, `format: regex`) run on RE2, in linear time,
  and one RE2 cannot run is refused at save (`mesh.runtime.patterns`).
* Validation's cost: without references a schema is a tree, and checking an instance visits
  each (schema node, instance node) pair at most once, so it runs where it is asked for. `$ref`
  can make it exponential (`anyOf` of two branches that both recurse: depth 16 took 17 s), so
  `instance_errors_async` validates against a schema with references in the sandbox
  (`mesh.runtime.sandbox`), under its deadline.

    problems = schemas.problems(schema, "input_schema")   # [(field path, problem)], [] when fine
    errors = await schemas.instance_errors_async(schema, arguments, "arguments", "input_schema",
                                                 tenant=caller.tenant_id)
"""

from __future__ import annotations

import functools
import json
from typing import Any

import jsonschema
from referencing import Registry
from referencing.exceptions import Unresolvable

from mesh.runtime import caches, patterns
from mesh.runtime.errors import FailedPrecondition

# No `retrieve` function: what is not in a schema (or the bundled metaschemas, which jsonschema
# adds itself) is unresolvable.
NO_RETRIEVAL: Registry = Registry()
REFERENCE_KEYWORDS = ("$ref", "$dynamicRef", "$recursiveRef")
# Keywords whose values are data, not subschemas: a `{"$ref": ...}` inside them is not a reference.
_DATA_KEYWORDS = frozenset({"const", "enum", "default", "examples", "example"})


class SchemaUnusable(FailedPrecondition):
    """A stored schema that cannot validate (a reference it does not hold)."""


def _pointer(document: Any, pointer: str) -> bool:
    """Whether the JSON pointer (`/a/b`, unescaped per RFC 6901) leads somewhere in `document`."""
    target = document
    for raw in pointer.split("/")[1:]:
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(target, dict) and part in target:
            target = target[part]
        elif isinstance(target, list) and part.isdigit() and int(part) < len(target):
            target = target[int(part)]
        else:
            return False
    return True


def _anchors(resource: Any) -> set[str]:
    found, stack = set(), [resource]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key in ("$anchor", "$dynamicAnchor"):
                if isinstance(node.get(key), str):
                    found.add(node[key])
            stack.extend(v for k, v in node.items() if k not in _DATA_KEYWORDS)
        elif isinstance(node, list):
            stack.extend(node)
    return found


def _reference_problems(schema: Any, field: str) -> list[tuple[str, str]]:
    """Every reference keyword of the schema is a fragment that resolves inside the resource
    it sits in (the schema, or the nearest subschema with its own `$id`)."""
    found: list[tuple[str, str]] = []
    stack: list[tuple[Any, str, Any]] = [(schema, field, schema)]
    while stack:
        node, path, resource = stack.pop()
        if isinstance(node, list):
            stack.extend((item, f"{path}[{index}]", resource) for index, item in enumerate(node))
            continue
        if not isinstance(node, dict):
            continue
        if node is not schema and isinstance(node.get("$id"), str):
            resource = node
        for keyword in REFERENCE_KEYWORDS:
            reference = node.get(keyword)
            if not isinstance(reference, str):
                continue
            where = f"{path}.{keyword}"
            if not reference.startswith("#"):
                found.append((where, f"{reference!r} is not a reference inside this schema; "
                              "only local references (#/$defs/...) are resolved, nothing is "
                              "fetched"))
            elif reference.startswith("#/") or reference == "#":
                if not _pointer(resource, reference[1:]):
                    found.append((where, f"{reference!r} points nowhere in this schema"))
            elif reference[1:] not in _anchors(resource):
                found.append((where, f"{reference!r} names no $anchor of this schema"))
        stack.extend((value, f"{path}.{key}", resource) for key, value in node.items()
                     if key not in _DATA_KEYWORDS)
    return found


def problems(schema: Any, field: str) -> list[tuple[str, str]]:
    """(field path, problem) for each reason `schema` cannot be saved; [] when it can. An empty
    schema (`{}`, "not given") is fine."""
    if not schema:
        return []
    if not isinstance(schema, dict | bool):
        return [(field, "must be a JSON Schema object")]
    cls = _validator_class(schema)
    if cls is None:
        return [(f"{field}.$schema", f"unknown metaschema {schema['$schema']!r}; leave it out "
                 "(draft 2020-12) or name a published draft")]
    try:
        # The metaschema declares `pattern` (and patternProperties' names) `format: regex`.
        cls.check_schema(schema, format_checker=patterns.FORMAT_CHECKER)
    except jsonschema.SchemaError as exc:
        path = ".".join(str(p) for p in exc.absolute_path)
        return [(f"{field}.{path}" if path else field, f"not a valid JSON Schema: {exc.message}")]
    except Unresolvable as exc:  # a metaschema ($schema) it does not bundle
        return [(f"{field}.$schema", f"unknown metaschema: {exc}")]
    return _reference_problems(schema, field)


def _validator_class(schema: Any):
    """The validator class of the draft the schema names (2020-12 when it names none); None for
    a `$schema` jsonschema does not know (it would otherwise warn and guess)."""
    if isinstance(schema, dict) and "$schema" in schema:
        if not isinstance(schema["$schema"], str):
            return None
        return jsonschema.validators.validator_for(schema, default=None)
    return jsonschema.Draft202012Validator


@functools.lru_cache(maxsize=1024)
def _cached(schema_json: str):
    schema = json.loads(schema_json)
    cls = _validator_class(schema) or jsonschema.Draft202012Validator
    return patterns.extend(cls)(schema, registry=NO_RETRIEVAL)


caches.register_lru("schemas", _cached)


def validator(schema: dict[str, Any]):
    """A validator of `schema` that resolves only what the schema holds and matches patterns on
    RE2 (cached per schema)."""
    return _cached(json.dumps(schema, sort_keys=True))


def instance_errors(schema: dict[str, Any], instance: Any, prefix: str,
                    field: str = "schema") -> list[tuple[str, str]]:
    """(field path under `prefix`, problem) for each way `instance` does not match `schema`; a
    missing required property is named itself (`arguments.city: is required`). A schema that
    cannot validate (`field`, as stored) is `SchemaUnusable`."""
    if not schema:
        return []
    found = []
    try:
        errors = sorted(validator(schema).iter_errors(instance),
                        key=lambda e: [(0, p) if isinstance(p, int) else (1, str(p))
                                       for p in e.absolute_path])
    except Unresolvable as exc:
        raise SchemaUnusable(f"{field} cannot be used: {exc}; only references inside the "
                             "schema resolve. Save it again without it",
                             reason="SCHEMA_UNUSABLE", details={"field": field}) from None
    except jsonschema.SchemaError as exc:
        raise SchemaUnusable(f"{field} is not a valid JSON Schema: {exc.message}",
                             reason="SCHEMA_UNUSABLE", details={"field": field}) from None
    for error in errors:
        path = [str(p) for p in error.absolute_path]
        if error.validator == "required" and isinstance(error.instance, dict):
            for name in error.validator_value:
                if name not in error.instance:
                    found.append((".".join([prefix, *path, name]), "is required"))
            continue
        found.append((".".join([prefix, *path]), error.message))
    return found


_REFERENCES = frozenset(REFERENCE_KEYWORDS)


def is_bounded(schema: Any) -> bool:
    """Whether validating against `schema` costs at most about its size times the instance's:
    it has no references (see the module's docstring)."""
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if _REFERENCES.intersection(node):
                return False
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return True


async def instance_errors_async(schema: dict[str, Any], instance: Any, prefix: str,
                                field: str = "schema", *, tenant: str = "",
                                timeout: float | None = None) -> list[tuple[str, str]]:
    """`instance_errors`, inline for a schema without references, else in the sandbox; a
    validation that passes its deadline is an error of the instance (named `prefix`)."""
    if not schema or is_bounded(schema):
        return instance_errors(schema, instance, prefix, field)
    unusable = _reference_problems(schema, field)  # stored before references were checked
    if unusable:
        raise SchemaUnusable(f"{field} cannot be used: {unusable[0][1]}; only references inside "
                             "the schema resolve. Save it again without it",
                             reason="SCHEMA_UNUSABLE", details={"field": field})
    from mesh.runtime import sandbox

    try:
        found = await sandbox.run("mesh.runtime.schemas:instance_errors", schema, instance,
                                  prefix, field, tenant=tenant, timeout=timeout)
    except TimeoutError:
        return [(prefix, "validating against the schema took longer than its deadline")]
    except sandbox.SandboxError as exc:
        return [(prefix, f"could not be validated against the schema: {exc}")]
    return [(path, problem) for path, problem in found]
