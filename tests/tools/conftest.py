from __future__ import annotations

import pytest

from agentmesh.tools.v1 import tools_pb2_grpc as pb_grpc
from mesh.tools.service import DEFINITION
from tests.harness import ServiceHarness
from tests.support.fixtures import fake_masterdata, local_server


masterdata = fake_masterdata({"api-token": "s3cr3t-token-value"})


# Servers of their own, not the session's: the tests count what arrives.
web = local_server("tests.fakes.http_server:LocalHTTPServer", scope="module")
mcp_server = local_server("tests.fakes.mcp_server:LocalMCPServer", scope="module")


@pytest.fixture(scope="module")
def tools_service(tmp_path_factory, masterdata):
    """The tools service with loopback 127.0.0.1 (only) allowed, as a test of local servers needs."""
    with ServiceHarness(DEFINITION, tmp_path_factory.mktemp("tools"),
                        peers=f"masterdata={masterdata.address}",
                        egress_allow="127.0.0.1") as harness:
        yield harness


@pytest.fixture(scope="module")
def strict_service(tmp_path_factory, masterdata):
    """The tools service with the default, empty egress allow-list."""
    with ServiceHarness(DEFINITION, tmp_path_factory.mktemp("tools-strict"),
                        peers=f"masterdata={masterdata.address}") as harness:
        yield harness


@pytest.fixture
def stub(tools_service):
    return tools_service.stub(pb_grpc.ToolServiceStub)


@pytest.fixture
def strict(strict_service):
    return strict_service.stub(pb_grpc.ToolServiceStub)
