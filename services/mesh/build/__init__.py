"""The build tools: what turns the contract into the files the product reads, run from a
checkout by a developer (`agentmesh gen`, `agentmesh helm-gen`), never by a running mesh.

    repo.py     where the checkout and its generated files are (the only module that knows)
    protos.py   protos/ -> gen/: messages, stubs, `.pyi`, the descriptor set (grpcio-tools, buf)
    openapi.py  the descriptor set -> the OpenAPI 3.1 document (gen/agentmesh/openapi.json)
    helm.py     the contract -> the Helm chart's generated files (helm/agentmesh/files/)
    client.py   the contract -> the Python client's routes, models and service classes
                (services/client/agentmesh_client/_generated/)

Imports go one way: `protos` runs `openapi` and then `helm`; both read `repo`; nothing here is
imported by the runtime, which reads the generated files as package resources
(`mesh.resources`). Only `mesh.cli` reaches in, to dispatch the two commands.
"""
