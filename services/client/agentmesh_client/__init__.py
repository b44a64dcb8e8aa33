"""The Python client of Agent Mesh (the `agentmesh-client` distribution): the REST API of a
running mesh, sync and async, with typed models and one exception per kind of failure. It needs
neither the server nor grpcio/protobuf.

    from agentmesh_client import Client

    with Client("http://127.0.0.1:8080") as mesh:
        mesh.login("you@example.com", "change-me-now")
        agent = mesh.agents.create({"name": "helper", "model": "gpt-4o"})
        print(agent.id, agent.status)
"""

from agentmesh_client.client import AsyncClient, Client, Tokens, ended_statuses
from agentmesh_client.errors import (ApiError, Conflict, DeadlineExceeded, FailedPrecondition,
                                     InvalidArgument, MeshError, MethodNotAllowed, NotFound,
                                     PayloadTooLarge, PermissionDenied, RateLimited, ServerError,
                                     Unauthenticated, Unavailable, Unimplemented, Unreachable)
from agentmesh_client._service import route

__all__ = [
    "ApiError", "AsyncClient", "Client", "Conflict", "DeadlineExceeded", "FailedPrecondition",
    "InvalidArgument", "MeshError", "MethodNotAllowed", "NotFound", "PayloadTooLarge",
    "PermissionDenied", "RateLimited", "ServerError", "Tokens", "Unauthenticated",
    "Unavailable", "Unimplemented", "Unreachable", "ended_statuses", "route",
]
