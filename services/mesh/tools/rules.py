"""The tool rules the OpenAPI document states too (`mesh.runtime.limits.When`): a tool's `type`
needs its typed config (`TYPE_OF`, which `definition_errors` reads too)."""

from __future__ import annotations

from mesh.runtime.limits import When
from mesh.tools.definition import TYPE_OF
from agentmesh.tools.v1 import tools_pb2 as pb

CONDITIONS: dict[str, tuple[When, ...]] = {
    "agentmesh.tools.v1.Tool": tuple(
        When("type", (pb.ToolType.Name(kind),),
             {"required": [config], "properties": {config: {"type": "object"}}})
        for config, kind in TYPE_OF.items()),
}
