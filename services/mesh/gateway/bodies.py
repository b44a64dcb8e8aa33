"""The shapes of REST request bodies, for the gateway's Lua filter.

Envoy's transcoder drops JSON fields the request message does not have (none of its options is
about body fields: `reject_unknown_query_parameters` and friends concern the query string), and
once the body is protobuf nothing downstream can tell that a field was sent. So the Lua filter,
which still holds the JSON, walks it against the tables made here and refuses an unknown field,
a list where one value goes, or an object where a scalar goes, naming the field as the client
wrote it (`gateway.lua`, `check_body`). Values themselves (a number for a string, an unknown
enum name) stay the transcoder's to judge; the Lua filter rewrites its messages.

Tables (all generated from the contract, filled into `gateway.lua`):

    BODY_TYPES[i]  = {[json key] = code, ...} for message type i (proto and lowerCamel names)
    route entry    = {..., {[METHOD] = {code, "<body field>"}}} per REST binding with a body

A code packs what the walker needs about one field: kind (code % 8), repeated (bit 8), and an
index (code // 16): the message type for MESSAGE and MAP, the scalar's name in SCALAR_NAMES for
SCALAR.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2

from mesh.contract import Contract, HttpBinding, Rpc

_F = descriptor_pb2.FieldDescriptorProto

FREE, SCALAR, MESSAGE, MAP, FREE_OBJECT, FREE_LIST = range(6)
REPEATED = 8

SCALAR_NAMES = ["a string", "a number", "an integer", "true or false", "a value name",
                "a date-time string", "a duration string", "a base64 string",
                "a comma-separated list of field names"]
_SCALAR_OF_TYPE = {
    _F.TYPE_STRING: 0, _F.TYPE_DOUBLE: 1, _F.TYPE_FLOAT: 1,
    _F.TYPE_INT32: 2, _F.TYPE_SINT32: 2, _F.TYPE_SFIXED32: 2, _F.TYPE_UINT32: 2,
    _F.TYPE_FIXED32: 2, _F.TYPE_INT64: 2, _F.TYPE_SINT64: 2, _F.TYPE_SFIXED64: 2,
    _F.TYPE_UINT64: 2, _F.TYPE_FIXED64: 2, _F.TYPE_BOOL: 3, _F.TYPE_ENUM: 4, _F.TYPE_BYTES: 7,
}
# Well-known types by how their JSON looks: free-form, or one scalar.
_FREE_TYPES = {"google.protobuf.Value": FREE, "google.protobuf.Struct": FREE_OBJECT,
               "google.protobuf.Any": FREE_OBJECT, "google.protobuf.ListValue": FREE_LIST}
_SCALAR_TYPES = {"google.protobuf.Timestamp": 5, "google.protobuf.Duration": 6,
                 "google.protobuf.FieldMask": 8, "google.protobuf.StringValue": 0,
                 "google.protobuf.BytesValue": 7, "google.protobuf.BoolValue": 3,
                 "google.protobuf.DoubleValue": 1, "google.protobuf.FloatValue": 1,
                 "google.protobuf.Int32Value": 2, "google.protobuf.UInt32Value": 2,
                 "google.protobuf.Int64Value": 2, "google.protobuf.UInt64Value": 2}
# A body of raw bytes (an uploaded file): not JSON, not walked.
_RAW_BODY = "google.api.HttpBody"


def _code(kind: int, index: int = 0, repeated: bool = False) -> int:
    return index * 16 + (REPEATED if repeated else 0) + kind


def _json_name(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


class BodySchemas:
    """The message tables and each body route's entry, built on demand from the contract."""

    def __init__(self, contract: Contract) -> None:
        self.contract = contract
        self.index: dict[str, int] = {}
        self.types: list[dict[str, int]] = []

    def _message(self, type_name: str) -> int:
        """The 1-based index of a message's table (Lua lists start at 1), made once."""
        found = self.index.get(type_name)
        if found is not None:
            return found
        self.types.append({})
        number = self.index[type_name] = len(self.types)
        fields: dict[str, int] = {}
        for fld in self.contract.messages[type_name].field:
            code = self.field_code(fld)
            fields[fld.name] = code
            fields[fld.json_name or _json_name(fld.name)] = code
        self.types[number - 1] = fields
        return number

    def _type_code(self, fld: _F) -> int:
        """The code of one value of the field (an item, for a repeated field)."""
        if fld.type != _F.TYPE_MESSAGE:
            return _code(SCALAR, _SCALAR_OF_TYPE.get(fld.type, 0))
        type_name = fld.type_name.lstrip(".")
        if type_name in _FREE_TYPES:
            return _code(_FREE_TYPES[type_name])
        if type_name in _SCALAR_TYPES:
            return _code(SCALAR, _SCALAR_TYPES[type_name])
        message = self.contract.messages[type_name]
        if message.options.map_entry:
            value = next(f for f in message.field if f.number == 2)
            if value.type == _F.TYPE_MESSAGE and value.type_name.lstrip(".") not in \
                    (*_FREE_TYPES, *_SCALAR_TYPES):
                return _code(MAP, self._message(value.type_name.lstrip(".")))
            return _code(FREE_OBJECT)  # keys are free; scalar values are the transcoder's
        return _code(MESSAGE, self._message(type_name))

    def field_code(self, fld: _F) -> int:
        code = self._type_code(fld)
        is_map = (fld.type == _F.TYPE_MESSAGE and fld.type_name.lstrip(".") in
                  self.contract.messages and
                  self.contract.messages[fld.type_name.lstrip(".")].options.map_entry)
        if fld.label == _F.LABEL_REPEATED and not is_map:
            code += REPEATED
        return code

    def route_body(self, rpc: Rpc, binding: HttpBinding) -> tuple[int, str] | None:
        """(root code, body field name) of a binding with a JSON body, None otherwise."""
        if not binding.body or rpc.input_type not in self.contract.messages:
            return None
        if binding.body == "*":
            return _code(MESSAGE, self._message(rpc.input_type)), ""
        request = self.contract.messages[rpc.input_type]
        fld = next((f for f in request.field if f.name == binding.body), None)
        if fld is None or fld.type_name.lstrip(".") == _RAW_BODY:
            return None
        return self.field_code(fld), binding.body


def enum_values(contract: Contract) -> dict[str, str]:
    """Each of the contract's enums -> its value names but the zero one, for messages about a
    value the transcoder could not read ("one of AGENT_STATUS_DRAFT, ...")."""
    return {name: ", ".join(v.name for v in enum.value if v.number != 0)
            for name, enum in sorted(contract.enums.items()) if name.startswith("agentmesh.")}
