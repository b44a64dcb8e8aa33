from __future__ import annotations

import pytest

from agentmesh.tools.v1 import tools_pb2_grpc as pb_grpc
from mesh.tools.service import DEFINITION
from tests.fakes.http_server import LocalHTTPServer
from tests.fakes.masterdata import FakeMasterData
from tests.fakes.mcp_server import LocalMCPServer
from tests.harness import Identity, ServiceHarness


@pytest.fixture(scope="module")
def masterdata():
    fake = FakeMasterData()
    fake.add_secret("api-token", "s3cr3t-token-value")
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def web():
    server = LocalHTTPServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def mcp_server():
    server = LocalMCPServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def tools_service(tmp_path_factory, masterdata):
    """The tools service with loopback 127.0.0.1 (only) allowed, as a test of local servers needs."""
    harness = ServiceHarness(DEFINITION, tmp_path_factory.mktemp("tools"),
                             peers=f"masterdata={masterdata.address}", egress_allow="127.0.0.1")
    yield harness
    harness.close()


@pytest.fixture(scope="module")
def strict_service(tmp_path_factory, masterdata):
    """The tools service with the default, empty egress allow-list."""
    harness = ServiceHarness(DEFINITION, tmp_path_factory.mktemp("tools-strict"),
                             peers=f"masterdata={masterdata.address}")
    yield harness
    harness.close()


@pytest.fixture
def stub(tools_service):
    return tools_service.stub(pb_grpc.ToolServiceStub)


@pytest.fixture
def strict(strict_service):
    return strict_service.stub(pb_grpc.ToolServiceStub)


@pytest.fixture
def me():
    return Identity()
