"""The agents service beside a tools service, a fake masterdata and a scripted OpenAI-compatible
model server, for the interaction tests (each module gets its own: module-scoped)."""

from __future__ import annotations

import pytest

from agentmesh.agents.v1 import agents_pb2_grpc as pb_grpc
from mesh.agents.service import DEFINITION as AGENTS
from mesh.tools.service import DEFINITION as TOOLS
from tests.harness import ServiceHarness
from tests.support.fixtures import fake_masterdata, local_server

masterdata = fake_masterdata({"model-key": "sk-test-123"})
# Its own, not the session's: scripts are played per model name.
model_server = local_server("tests.fakes.openai_server:ScriptedModelServer", scope="module")


@pytest.fixture(scope="module")
def services(tmp_path_factory, masterdata):
    with ServiceHarness(TOOLS, tmp_path_factory.mktemp("tools"),
                        peers=f"masterdata={masterdata.address}",
                        egress_allow="127.0.0.1") as tools, \
            ServiceHarness(AGENTS, tmp_path_factory.mktemp("agents"), egress_allow="127.0.0.1",
                           peers=f"masterdata={masterdata.address},"
                                 f"tools=127.0.0.1:{tools.running.port}") as agents:
        yield agents, tools


@pytest.fixture
def agents(services):
    return services[0].stub(pb_grpc.AgentServiceStub)


@pytest.fixture
def calls(services):
    return services[0].stub(pb_grpc.CallServiceStub)
