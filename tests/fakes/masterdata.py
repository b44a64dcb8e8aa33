"""A minimal stand-in for the masterdata service: a real gRPC server answering the few reads
that tools and agents make (GetModel, GetPrompt, GetConstraint, GetSecret and the internal
RevealSecret), from dicts the test fills. Used until the masterdata service is built; the
e2e tests use the real one through the gateway when it exists."""

from __future__ import annotations

from concurrent import futures

import grpc
from google.protobuf import json_format

from agentmesh.masterdata.v1 import masterdata_pb2 as md
from agentmesh.masterdata.v1 import masterdata_pb2_grpc as md_grpc
from mesh.runtime.masterdata_client import MasterData


def _lookup(store: dict, key: str, context, noun: str):
    for item in store.values():
        if key in (item.id, item.name):
            return item
    context.abort(grpc.StatusCode.NOT_FOUND, f"{noun} {key!r} not found")


class FakeMasterData:
    def __init__(self) -> None:
        self.models: dict[str, md.Model] = {}
        self.prompts: dict[str, md.Prompt] = {}
        self.constraints: dict[str, md.Constraint] = {}
        self.secrets: dict[str, md.Secret] = {}
        self.reveals: list[str] = []
        fake = self

        class Models(md_grpc.ModelServiceServicer):
            def GetModel(self, request, context):
                return _lookup(fake.models, request.model_id, context, "model")

        class Prompts(md_grpc.PromptServiceServicer):
            def GetPrompt(self, request, context):
                return _lookup(fake.prompts, request.prompt_id, context, "prompt")

        class Constraints(md_grpc.ConstraintServiceServicer):
            def GetConstraint(self, request, context):
                return _lookup(fake.constraints, request.constraint_id, context, "constraint")

        class Secrets(md_grpc.SecretServiceServicer):
            def GetSecret(self, request, context):
                found = _lookup(fake.secrets, request.secret_id, context, "secret")
                return md.Secret(id=found.id, name=found.name, value_hint="****")

        path, request_class, response_class, field = MasterData.reveal_route()
        service, method = path.strip("/").split("/")

        def reveal(request, context):
            key = next(getattr(request, f) for f in ("name", "secret_id", "secret_name", "secret")
                       if f in request.DESCRIPTOR.fields_by_name)
            found = _lookup(fake.secrets, key, context, "secret")
            fake.reveals.append(key)
            return response_class(**{field: found.value})

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        md_grpc.add_ModelServiceServicer_to_server(Models(), self.server)
        md_grpc.add_PromptServiceServicer_to_server(Prompts(), self.server)
        md_grpc.add_ConstraintServiceServicer_to_server(Constraints(), self.server)
        md_grpc.add_SecretServiceServicer_to_server(Secrets(), self.server)
        self.server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(service, {
            method: grpc.unary_unary_rpc_method_handler(
                reveal, request_deserializer=request_class.FromString,
                response_serializer=response_class.SerializeToString)})])
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.address = f"127.0.0.1:{self.port}"
        self.server.start()

    def add_model(self, name: str, *, input_per_1m: float = 0.0, output_per_1m: float = 0.0,
                  **fields) -> md.Model:
        """A model; prices per million tokens, written in whichever unit the contract has."""
        pricing_fields = md.ModelPricing.DESCRIPTOR.fields_by_name
        per_1m = "input_per_1m_tokens" in pricing_fields
        scale = 1 if per_1m else 1 / 1000
        unit = "1m" if per_1m else "1k"
        fields["pricing"] = {f"input_per_{unit}_tokens": input_per_1m * scale,
                             f"output_per_{unit}_tokens": output_per_1m * scale}
        model = json_format.ParseDict({"name": name, "id": f"model-{name}", **fields}, md.Model())
        self.models[name] = model
        return model

    def add_prompt(self, name: str, content: str, **fields) -> md.Prompt:
        prompt = json_format.ParseDict({"name": name, "id": f"prompt-{name}",
                                        "content": content, **fields}, md.Prompt())
        self.prompts[name] = prompt
        return prompt

    def add_constraint(self, name: str, rules: dict, **fields) -> md.Constraint:
        constraint = json_format.ParseDict({
            "name": name, "id": f"constraint-{name}",
            "constraint_type": "CONSTRAINT_TYPE_CUSTOM", "rules": rules, **fields},
            md.Constraint())
        self.constraints[name] = constraint
        return constraint

    def add_secret(self, name: str, value: str) -> None:
        self.secrets[name] = md.Secret(id=f"secret-{name}", name=name, value=value)

    def close(self) -> None:
        self.server.stop(0)
