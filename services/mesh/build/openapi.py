"""Builds the OpenAPI 3.1 document of the REST API from the descriptor set.

Schemas follow the proto3 JSON mapping as the gateway prints it (proto field names, enums as
names, 64-bit integers as strings, Timestamps as RFC 3339 strings). Every error response is the
one envelope `{error, message, details, correlation_id, request_id, timestamp}`; request bodies
are closed (`additionalProperties: false`), as the gateway's body check holds them.

The document is written for client generators (openapi-python-client, openapi-typescript:
tests/e2e/test_openapi_generators.py) as well as for validators: a body's list is an array of
items and an enum is its value names, exactly, because the gateway's body check refuses the other
forms the transcoder would take (one value for a list, a null or nested-list item, an enum's
number, a null body). No schema refers to itself. Query parameters, which the body check does not
see, still take an enum's number and one value for a list.
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from typing import Any

from google.api import field_behavior_pb2
from google.protobuf import descriptor_pb2

from mesh import contract as contract_mod
from mesh.runtime import sockets
from mesh.runtime.paging import MAX_PAGE_SIZE
from agentmesh.common.v1 import annotations_pb2

_F = descriptor_pb2.FieldDescriptorProto
_SCALARS: dict[int, dict[str, Any]] = {
    _F.TYPE_DOUBLE: {"type": "number", "format": "double"},
    _F.TYPE_FLOAT: {"type": "number", "format": "float"},
    _F.TYPE_INT32: {"type": "integer", "format": "int32"},
    _F.TYPE_SINT32: {"type": "integer", "format": "int32"},
    _F.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    _F.TYPE_UINT32: {"type": "integer", "format": "int64", "minimum": 0},
    _F.TYPE_FIXED32: {"type": "integer", "format": "int64", "minimum": 0},
    # proto3 JSON prints 64-bit integers as strings.
    _F.TYPE_INT64: {"type": "string", "format": "int64"},
    _F.TYPE_SINT64: {"type": "string", "format": "int64"},
    _F.TYPE_SFIXED64: {"type": "string", "format": "int64"},
    _F.TYPE_UINT64: {"type": "string", "format": "uint64"},
    _F.TYPE_FIXED64: {"type": "string", "format": "uint64"},
    _F.TYPE_BOOL: {"type": "boolean"},
    _F.TYPE_STRING: {"type": "string"},
    _F.TYPE_BYTES: {"type": "string", "contentEncoding": "base64"},
}
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": r"^-?\d+(\.\d+)?s$",
                                 "examples": ["1.5s"]},
    "google.protobuf.FieldMask": {"type": "string", "examples": ["name,description"]},
    "google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array", "items": {}},
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.Any": {"type": "object", "properties": {"@type": {"type": "string"}},
                            "additionalProperties": True},
    "google.protobuf.StringValue": {"type": ["string", "null"]},
    "google.protobuf.BoolValue": {"type": ["boolean", "null"]},
    "google.protobuf.Int32Value": {"type": ["integer", "null"]},
    "google.protobuf.Int64Value": {"type": ["string", "null"]},
    "google.protobuf.DoubleValue": {"type": ["number", "null"]},
}
_ERROR_STATUSES = {
    "400": "Malformed JSON, a body field the operation does not have (reason "
           "`UNKNOWN_FIELD`), a value of the wrong type, failed validation or an unknown "
           "query parameter.",
    "401": "Missing, invalid or expired credentials.",
    "403": "The caller lacks the scope this operation needs.",
    "404": "No such resource in the caller's tenant, or no such route.",
    "409": "A resource with that name already exists, or the state forbids the change.",
    "413": "The request body is too large.",
    "429": "Too many requests.",
    "500": "An unexpected server error.",
    "501": "Not implemented yet.",
    "503": "A service is down or not ready.",
}
_HTTPBODY = "google.api.HttpBody"
# The list convention (docs/contract.md): 0 means "not given" (page 1, 20 items).
_PAGING = {"page": {"minimum": 0},
           "page_size": {"minimum": 0, "maximum": MAX_PAGE_SIZE}}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """proto3 JSON reads `null` as "not set" for every field; an optional field may be null."""
    kind = schema.get("type")
    if isinstance(kind, str):
        return {**schema, "type": [kind, "null"]}
    if isinstance(kind, list):
        return {**schema, "type": [*kind, "null"]} if "null" not in kind else schema
    if "anyOf" in schema and set(schema) <= {"anyOf", "description", "readOnly", "writeOnly"}:
        if {"type": "null"} in schema["anyOf"]:
            return schema
        return {**schema, "anyOf": [*schema["anyOf"], {"type": "null"}]}
    if "$ref" in schema or "allOf" in schema:
        outer = {k: v for k, v in schema.items() if k in ("description", "readOnly", "writeOnly")}
        inner = {k: v for k, v in schema.items() if k not in outer}
        return {"anyOf": [inner, {"type": "null"}], **outer}
    return schema  # any JSON value already


def _conditions(contract: contract_mod.Contract) -> dict[str, tuple]:
    """The rules that depend on another field (`mesh.runtime.limits.When`), from the `rules`
    module of each service that has one: the tables the service's own validation reads."""
    found: dict[str, tuple] = {}
    for backend in sorted({r.backend for r in contract.rpcs}):
        try:
            module = importlib.import_module(f"mesh.{backend}.rules")
        except ModuleNotFoundError as exc:
            if exc.name not in (f"mesh.{backend}", f"mesh.{backend}.rules"):
                raise
            continue
        found.update(getattr(module, "CONDITIONS", {}))
    return found


class _Builder:
    def __init__(self, contract: contract_mod.Contract) -> None:
        self.contract = contract
        self.schemas: dict[str, Any] = {}
        self.conditions = _conditions(contract)

    def condition_schemas(self, name: str) -> list[dict[str, Any]]:
        """`if`/`then` for each rule of message `name` that depends on another field."""
        message = self.contract.messages[name]
        out = []
        for rule in self.conditions.get(name, ()):
            fld = next(f for f in message.field if f.name == rule.field)
            values: list[Any] = list(rule.values)
            zero: Any = ""
            if fld.type == _F.TYPE_ENUM:
                enum = self.contract.enums[fld.type_name.lstrip(".")]
                values += [v.number for v in enum.value if v.name in rule.values]
                zero = next(v.name for v in enum.value if v.number == 0)
            condition: dict[str, Any] = {"properties": {rule.field: {"enum": values}},
                                         "required": [rule.field]}
            if zero in rule.values and fld.label != _F.LABEL_REPEATED:
                # proto3: the zero value is the field not sent (left out, or null), and the
                # rule for it holds then too.
                condition = {"properties": {rule.field: {"enum": [*values, None]}}}
            out.append({"if": condition, "then": rule.then})
        return out

    # ---- schemas -------------------------------------------------------------------------
    def ref(self, type_name: str) -> dict[str, Any]:
        type_name = type_name.lstrip(".")
        if type_name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[type_name])
        if type_name in self.contract.enums:
            if type_name not in self.schemas:
                enum = self.contract.enums[type_name]
                self.schemas[type_name] = {
                    # Names, as answers print them; a body's number is refused by the gateway
                    # (a query parameter's is not: `query_parameters`).
                    "type": "string",
                    "enum": [v.name for v in enum.value],
                    "description": self.contract.comments.get(type_name, ""),
                }
            return {"$ref": f"#/components/schemas/{type_name}"}
        if type_name not in self.schemas:
            self.schemas[type_name] = {}  # placeholder breaks recursion
            self.schemas[type_name] = self.message_schema(type_name)
        return {"$ref": f"#/components/schemas/{type_name}"}

    def field_schema(self, msg_name: str, fld: _F) -> dict[str, Any]:
        # The bounds `mesh.runtime.limits` enforces, from the same field option.
        limits = fld.options.Extensions[annotations_pb2.limits]
        length: dict[str, Any] = {}
        if limits.max_length:
            length["maxLength"] = limits.max_length
        if limits.min_length:
            length["minLength"] = limits.min_length
        if limits.pattern:
            length["pattern"] = limits.pattern
        behaviors = contract_mod.Contract.field_behaviors(fld)
        required = field_behavior_pb2.REQUIRED in behaviors
        if fld.type == _F.TYPE_MESSAGE:
            entry = self.contract.messages.get(fld.type_name.lstrip("."))
            if entry is not None and entry.options.map_entry:
                value = next(f for f in entry.field if f.name == "value")
                value_schema = self.field_schema(fld.type_name.lstrip("."), value)
                if value.type == _F.TYPE_STRING:
                    value_schema.update(length)
                value_schema = _nullable(value_schema)  # a null value reads as the default
                schema = {"type": "object", "additionalProperties": value_schema}
                if limits.max_length:
                    schema["propertyNames"] = {"maxLength": limits.max_length}
                if limits.max_items:
                    schema["maxProperties"] = limits.max_items
                return schema
            item = self.ref(fld.type_name)
        elif fld.type == _F.TYPE_ENUM:
            item = self.ref(fld.type_name)
            if required and fld.label != _F.LABEL_REPEATED:
                # A required enum must be given: its zero value reads as "not sent".
                zero = next(v.name for v in self.contract.enums[fld.type_name.lstrip(".")].value
                            if v.number == 0)
                item = {"allOf": [item], "not": {"enum": [zero]}}
        else:
            item = dict(_SCALARS[fld.type])
            if fld.type == _F.TYPE_STRING:
                item.update(length)
            elif item.get("type") == "integer":
                item.update(self.range(limits, required))
        if fld.label == _F.LABEL_REPEATED:
            listed: dict[str, Any] = {"type": "array"}
            if limits.max_items:
                listed["maxItems"] = limits.max_items
            if limits.min_items:
                listed["minItems"] = limits.min_items
            # Exactly a list: one value in its place, a null item and a nested list, which the
            # transcoder would take, are refused by the gateway's body check (gateway.lua).
            return {**listed, "items": item}
        return item

    @staticmethod
    def range(limits, required: bool) -> dict[str, Any]:
        """`minimum`/`maximum` of an integer field. As `mesh.runtime.limits` reads them, zero
        is a field not sent and always passes unless the field is REQUIRED."""
        bounds: dict[str, Any] = {}
        if limits.HasField("minimum"):
            bounds["minimum"] = limits.minimum
        if limits.HasField("maximum"):
            bounds["maximum"] = limits.maximum
        if not bounds or required or (bounds.get("minimum", 0) <= 0 <= bounds.get("maximum", 0)):
            return bounds
        return {"anyOf": [{"const": 0}, bounds]}

    def message_schema(self, name: str, exclude: set[str] = frozenset()) -> dict[str, Any]:
        message = self.contract.messages[name]
        properties: dict[str, Any] = {}
        required: list[str] = []
        for fld in message.field:
            if fld.name in exclude:
                continue
            schema = self.field_schema(name, fld)
            behaviors = contract_mod.Contract.field_behaviors(fld)
            description = self.contract.comments.get(f"{name}.{fld.name}", "")
            extra: dict[str, Any] = {}
            if description:
                extra["description"] = description
            if field_behavior_pb2.OUTPUT_ONLY in behaviors:
                extra["readOnly"] = True
            # INPUT_ONLY (a password, a secret's value) is never returned. With tracked presence
            # (`optional`) the gateway omits it from answers: writeOnly. Without, every answer
            # prints it empty, so the resource's schema admits "" and the create body
            # (`resource_body`) asks for a value.
            printed_empty = (field_behavior_pb2.INPUT_ONLY in behaviors
                             and fld.type == _F.TYPE_STRING and not fld.proto3_optional
                             and fld.label != _F.LABEL_REPEATED)
            if field_behavior_pb2.INPUT_ONLY in behaviors and not printed_empty:
                extra["writeOnly"] = True
            if printed_empty and ("minLength" in schema or "pattern" in schema):
                bounded = {k: schema.pop(k) for k in ("pattern", "minLength", "maxLength")
                           if k in schema}
                # Typed branches (a generator reads each), and null as a third when optional.
                schema.pop("type", None)
                schema["anyOf"] = [{"type": "string", "maxLength": 0},
                                   {"type": "string", **bounded}]
            if "$ref" in schema and extra:
                schema = {"allOf": [schema], **extra}
            else:
                schema.update(extra)
            if (field_behavior_pb2.REQUIRED in behaviors and fld.type == _F.TYPE_STRING
                    and fld.label != _F.LABEL_REPEATED and "minLength" not in schema
                    and not printed_empty):
                schema["minLength"] = 1  # proto3: an empty string is a field not sent
            if (field_behavior_pb2.REQUIRED in behaviors
                    and fld.type_name == ".google.protobuf.Struct"
                    and fld.label != _F.LABEL_REPEATED):
                schema["minProperties"] = 1  # an empty object is "not given"
            if field_behavior_pb2.REQUIRED not in behaviors:
                schema = _nullable(schema)
            properties[fld.name] = schema
            # REQUIRED and INPUT_ONLY (a password): required when creating, never in answers.
            if (field_behavior_pb2.REQUIRED in behaviors
                    and field_behavior_pb2.INPUT_ONLY not in behaviors):
                required.append(fld.name)
        # A field the message does not have is refused (400 UNKNOWN_FIELD, by the gateway's
        # body check: mesh.gateway.bodies), an empty name too ("Proto fields must have a name").
        out: dict[str, Any] = {"type": "object", "properties": properties,
                               "propertyNames": {"minLength": 1},
                               "additionalProperties": False}
        if required:
            out["required"] = required
        # A oneof holds one member: the transcoder refuses a second one (400); null is unset.
        groups: dict[int, list[str]] = {}
        for fld in message.field:
            if (fld.HasField("oneof_index") and not fld.proto3_optional
                    and fld.name not in exclude):
                groups.setdefault(fld.oneof_index, []).append(fld.name)
        pairs = [{"required": [a, b], "properties": {a: {"not": {"type": "null"}},
                                                     b: {"not": {"type": "null"}}}}
                 for members in groups.values()
                 for i, a in enumerate(members) for b in members[i + 1:]]
        if pairs:
            out["not"] = {"anyOf": pairs}
        conditions = self.condition_schemas(name)
        if conditions:
            out["allOf"] = conditions
        comment = self.contract.comments.get(name, "")
        if comment:
            out["description"] = comment
        return out

    # ---- operations ----------------------------------------------------------------------
    def query_parameters(self, rpc: contract_mod.Rpc, binding, skip: set[str]) -> list[dict]:
        params = []
        message = self.contract.messages[rpc.input_type]
        for fld in message.field:
            if fld.name in skip:
                continue
            is_message = fld.type == _F.TYPE_MESSAGE
            if is_message and fld.type_name.lstrip(".") not in _WELL_KNOWN:
                continue  # the transcoder takes nested fields as `a.b=`, not documented here
            schema = self.query_schema(self.field_schema(rpc.input_type, fld), fld)
            if fld.name in _PAGING and fld.type == _F.TYPE_INT32:
                schema.update(_PAGING[fld.name])
            if fld.type_name.lstrip(".") == "google.protobuf.FieldMask" and binding.body:
                schema.update(self.update_mask_schema(message, binding.body))
            required = field_behavior_pb2.REQUIRED in contract_mod.Contract.field_behaviors(fld)
            if required and fld.type == _F.TYPE_STRING and "minLength" not in schema:
                schema["minLength"] = 1  # proto3: an empty string is a parameter not sent
            params.append({
                "name": fld.name,
                "in": "query",
                "required": required,
                "description": self.contract.comments.get(f"{rpc.input_type}.{fld.name}", ""),
                "schema": schema,
            })
        return params

    def query_schema(self, schema: dict[str, Any], fld: _F) -> dict[str, Any]:
        """A query parameter as the transcoder reads it, which the gateway's body check does not
        see: an enum by its name or its number, and one value where a list goes."""
        if fld.type == _F.TYPE_ENUM:
            enum = self.contract.enums[fld.type_name.lstrip(".")]
            numbers = [v.number for v in enum.value if v.number != 0 or "not" not in schema]
            number = {"type": "integer", "enum": numbers}
            if fld.label == _F.LABEL_REPEATED:
                schema = {**schema, "items": {"anyOf": [schema["items"], number]}}
            else:
                return {"anyOf": [schema, number]}
        if fld.label == _F.LABEL_REPEATED:
            return {"anyOf": [schema, schema["items"]]}
        return schema

    def path_schema(self, message_name: str, variable: str) -> dict[str, Any]:
        """A path segment as the transcoder parses it into its field: an integer field takes
        only an integer (in its bounds); a string field takes its declared bounds."""
        message = self.contract.messages[message_name]
        fld = next((f for f in message.field if f.name == variable), None)
        if fld is None or fld.type == _F.TYPE_MESSAGE or fld.label == _F.LABEL_REPEATED:
            return {"type": "string"}
        schema = self.field_schema(message_name, fld)
        if fld.type == _F.TYPE_ENUM:
            return {"type": "string"}
        if schema.get("type") == "integer" and "format" in schema and "int32" in schema["format"]:
            schema.setdefault("minimum", -2**31)
            schema.setdefault("maximum", 2**31 - 1)
        return schema

    def resource_body(self, request: descriptor_pb2.DescriptorProto,
                      body_field: _F) -> tuple[dict[str, Any], bool]:
        """The body of a create or update (`body: "<resource>"`) and whether it is required.

        An update (the request has an update mask) is partial: no field is required, and a
        bounded string may also be empty (proto3's "not sent"). A create requires the resource's
        REQUIRED fields, INPUT_ONLY ones (a password) included."""
        type_name = body_field.type_name.lstrip(".")
        if body_field.type != _F.TYPE_MESSAGE or type_name not in self.contract.messages:
            return self.field_schema(request.name, body_field), True
        is_update = any(f.type_name.lstrip(".") == "google.protobuf.FieldMask"
                        for f in request.field)
        if is_update:
            name = f"{type_name}.Update"
            if name not in self.schemas:
                self.schemas[name] = self.partial_schema(type_name)
            return {"$ref": f"#/components/schemas/{name}"}, False
        resource = self.contract.messages[type_name]
        created = [f for f in resource.field
                   if {field_behavior_pb2.REQUIRED, field_behavior_pb2.INPUT_ONLY}
                   <= contract_mod.Contract.field_behaviors(f)]
        on_create = [f.name for f in created]
        schema = self.ref(type_name)
        if on_create:
            given = {"required": on_create}
            # An INPUT_ONLY string without presence reads "" as not sent: a value is needed.
            strings = {f.name: {"minLength": 1} for f in created
                       if f.type == _F.TYPE_STRING and not f.proto3_optional}
            if strings:
                given["properties"] = strings
            schema = {"allOf": [schema, given]}
        return schema, True

    def partial_schema(self, type_name: str) -> dict[str, Any]:
        schema = self.message_schema(type_name)
        schema.pop("required", None)
        # Rules tied to another field hold for the resource as stored after the change, which
        # a partial body alone does not show: the service checks them (400).
        schema.pop("allOf", None)
        # No body at all changes nothing; a null one is refused by the gateway's body check.
        schema["type"] = "object"
        for name, prop in list(schema["properties"].items()):
            if "not" in prop and "allOf" in prop:  # a required enum: zero is "not sent" here
                prop = {**prop["allOf"][0], **{k: v for k, v in prop.items()
                                              if k not in ("allOf", "not")}}
            fld = next(f for f in self.contract.messages[type_name].field if f.name == name)
            if fld.type == _F.TYPE_ENUM and fld.label != _F.LABEL_REPEATED and "enum" in prop:
                # a required enum listed without its zero value: here zero is "not sent" too
                prop = {**{k: v for k, v in prop.items() if k not in ("type", "enum", "not")},
                        **self.ref(fld.type_name)}
            if (prop.get("type") in ("string", ["string", "null"])
                    and ("pattern" in prop or "minLength" in prop)):
                bounded = {k: prop.pop(k) for k in ("pattern", "minLength", "maxLength")
                           if k in prop}
                prop.pop("type", None)
                prop["anyOf"] = [{"type": "string", "maxLength": 0}, {"type": "string", **bounded}]
            if fld.type_name == ".google.protobuf.Struct":
                # `{}` is "not sent" here as `""` is: a required object keeps its value
                # (convert.changes), or a masked path inside it goes back to its default.
                prop.pop("minProperties", None)
            schema["properties"][name] = _nullable(prop)
        schema["description"] = (f"The fields to change (all optional; see `update_mask`). "
                                 f"{schema.get('description', '')}").strip()
        return schema

    def update_mask_schema(self, request: descriptor_pb2.DescriptorProto,
                           body: str) -> dict[str, Any]:
        """An update mask may name the fields of the updated resource that a client can change:
        neither OUTPUT_ONLY, IMMUTABLE nor INPUT_ONLY."""
        body_field = next((f for f in request.field if f.name == body), None)
        resource = body_field and self.contract.messages.get(body_field.type_name.lstrip("."))
        if resource is None:
            return {}
        fixed = {field_behavior_pb2.OUTPUT_ONLY, field_behavior_pb2.IMMUTABLE,
                 field_behavior_pb2.INPUT_ONLY}
        names = [f.name for f in resource.field
                 if not fixed & contract_mod.Contract.field_behaviors(f)]
        if not names:
            return {}
        one = "(" + "|".join(names) + ")"
        return {"pattern": f"^({one}(,{one})*)?$", "examples": [",".join(names[:2])]}

    def http_body_content(self, rpc: contract_mod.Rpc) -> dict[str, Any]:
        """What an RPC returning `google.api.HttpBody` answers, from its `http_body` option."""
        declared = rpc.http_body
        if declared is None or not declared.content_type:
            # It varies (a JSON or a YAML document, say): any body, of any type.
            return {"*/*": {"schema": {}}}
        content = {}
        for media in (declared.content_type, *declared.also):
            if media.endswith(("json", "yaml")):
                # A YAML answer is the same document as its JSON twin, in another syntax: a
                # client (and Schemathesis) parses it into the same object.
                schema = self.ref(declared.message) if declared.message else {"type": "object"}
            else:
                schema = {"type": "string"}
            content[media] = {"schema": schema}
        return content

    def operation(self, rpc: contract_mod.Rpc, binding) -> dict[str, Any]:
        path_vars = set(binding.variables)
        lines = rpc.comment.splitlines()
        op: dict[str, Any] = {
            # Letters, digits and `_` only: a generator makes a function name of it.
            "operationId": f"{rpc.service}_{rpc.name}"
                           + ("" if binding == rpc.bindings[0] else f"_{binding.method.lower()}_"
                              + re.sub(r"[^A-Za-z0-9]+", "_", binding.openapi_path).strip("_")),
            "tags": [rpc.service],
            "summary": lines[0] if lines else rpc.name,
            "description": rpc.comment,
            "x-grpc-method": rpc.grpc_path,
        }
        if rpc.public:
            op["security"] = []
        else:
            op["x-required-scope"] = rpc.scope or None
            needed = f"Requires scope `{rpc.scope}`." if rpc.scope else "Requires any valid credentials."
            op["description"] = f"{rpc.comment}\n\n{needed}".strip()
        params = [{"name": v, "in": "path", "required": True,
                   "description": self.contract.comments.get(f"{rpc.input_type}.{v}", ""),
                   "schema": self.path_schema(rpc.input_type, v)} for v in binding.variables]
        if binding.body == "":
            params += self.query_parameters(rpc, binding, path_vars)
        elif binding.body == "*":
            schema = self.message_schema(rpc.input_type, exclude=path_vars)
            # A missing body is an empty message: it fails only when a field is required.
            required = bool(schema.get("required"))
            op["requestBody"] = {"required": required, "content": {
                "application/json": {"schema": schema}}}
        else:
            message = self.contract.messages[rpc.input_type]
            body_field = next(f for f in message.field if f.name == binding.body)
            schema, required = self.resource_body(message, body_field)
            op["requestBody"] = {"required": required, "content": {"application/json": {
                "schema": schema}}}
            params += self.query_parameters(rpc, binding, path_vars | {binding.body})
        if params:
            op["parameters"] = params
        if rpc.output_type == _HTTPBODY:
            content = self.http_body_content(rpc)
        elif rpc.server_streaming:
            content = {"text/event-stream": {"schema": {
                "type": "string",
                "description": "Server-Sent Events; each `data:` line is one JSON "
                               f"`{rpc.output_type.split('.')[-1]}`.",
                "contentMediaType": "application/json",
                "contentSchema": self.ref(rpc.output_type)}}}
        else:
            content = {"application/json": {"schema": self.ref(rpc.output_type)}}
        ok = ("202", "Accepted") if rpc.accepted else ("200", "OK")
        op["responses"] = {ok[0]: {"description": ok[1], "content": content}}
        for status in _ERROR_STATUSES:
            if rpc.public and status == "403":
                continue
            if rpc.public and status == "401" and "UNAUTHENTICATED" not in rpc.comment:
                continue
            op["responses"][status] = {"$ref": f"#/components/responses/Error{status}"}
        return op


# OpenAPI cannot describe WebSockets; the document's description lists them
# (docs/live-events.md has the details and a browser example).
WEBSOCKETS = """## Live events (WebSocket)

""" + sockets.table() + """

Authenticate the upgrade request like any other: `Authorization: Bearer <JWT>` or `X-API-Key`.
Browsers, which cannot set headers on a WebSocket, first get a ticket with
`POST /api/v1/live/tickets` (single use, valid 30 s) and open `/ws/...?ticket=<ticket>`.
Without credentials the upgrade is refused (401).

Every message is JSON `{"type", "seq", "payload"}`. The first is `state` (the current state, as
the REST API shows it); then events in order (`execution.progress` carries what
`/api/v1/workflows/executions/{id}/watch` streams). Send `{"type": "ping"}` to get a `pong`
message, or the text `ping` to get the text `pong`.
Reconnect with `?after=<last seq>` to get the events you missed (kept ten minutes). A client too
slow to read is closed with code 4008 and may resume; an execution's socket closes with 1000
after its final state."""


def build(contract: contract_mod.Contract) -> dict[str, Any]:
    builder = _Builder(contract)
    paths: dict[str, dict[str, Any]] = {}
    for rpc in contract.rpcs:
        for binding in rpc.bindings:
            paths.setdefault(binding.openapi_path, {})[binding.method.lower()] = \
                builder.operation(rpc, binding)
    envelope = builder.message_schema("agentmesh.common.v1.ErrorEnvelope")
    envelope["required"] = ["error", "message", "correlation_id", "request_id", "timestamp"]
    # Some answers add keys a seed promises beside the envelope's (a denied dispatch:
    # `status`, `reason`, `governance`).
    envelope["additionalProperties"] = True
    builder.schemas["agentmesh.common.v1.ErrorEnvelope"] = envelope
    responses = {
        f"Error{status}": {
            "description": text,
            "headers": {"X-Correlation-ID": {"schema": {"type": "string"},
                                             "description": "The request's correlation id."},
                        "X-Request-ID": {"schema": {"type": "string"},
                                         "description": "The same id (seed 002's name)."}},
            "content": {"application/json": {"schema": {
                "$ref": "#/components/schemas/agentmesh.common.v1.ErrorEnvelope"}}},
        } for status, text in _ERROR_STATUSES.items()
    }
    tags = [{"name": s.split(".")[-1], "description": contract.comments.get(s, "")}
            for s in contract.services]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Agent Mesh API",
            "version": "v1",
            "description": "The REST face of Agent Mesh's gRPC services, transcoded by the "
                           "Envoy gateway. Authenticate with `Authorization: Bearer <JWT>` "
                           "(from `/api/v1/auth/login`) or `X-API-Key`.\n\n"
                           + WEBSOCKETS,
        },
        "servers": [{"url": "/"}],
        "tags": tags,
        "security": [{"bearerAuth": []}, {"apiKeyAuth": []}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "apiKeyAuth": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
            "schemas": dict(sorted(builder.schemas.items())),
            "responses": responses,
        },
    }


def write(descriptor: Path, out: Path) -> None:
    document = build(contract_mod.load(descriptor))
    out.write_text(json.dumps(document, indent=1, sort_keys=False) + "\n")
