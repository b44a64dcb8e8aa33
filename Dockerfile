# syntax=docker/dockerfile:1
# The Agent Mesh image: every service (`agentmesh serve <service>`), the migration Job
# (`agentmesh db upgrade`) and the key bootstrap Job (`agentmesh keys bootstrap-secret`) of the
# Helm chart. The gateway uses the official Envoy image; its config ships with the chart.
#
#   docker build -t agentmesh:0.1.0 .
#
# Not built in this repository's CI: its machines have no container engine. CI lints this file
# with hadolint (tests/helm/test_dockerfile.py); docs/deployment.md says how to build and check it.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: a virtualenv with the dependencies, then the project ------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
RUN python -m venv /opt/venv
# Dependencies first, from pyproject.toml and the lock (.ci/constraints.txt) alone, so this
# layer is reused while only code changes.
# The server requires the client package (services/client, agentmesh-client, which provides the
# `agentmesh` command): both are installed here, the client's code is small and changes rarely.
COPY pyproject.toml README.md ./
COPY .ci/constraints.txt .ci/constraints.txt
COPY services/client/ services/client/
RUN mkdir -p services/mesh gen/agentmesh \
    && touch services/mesh/__init__.py gen/agentmesh/__init__.py \
    && /opt/venv/bin/pip install -c .ci/constraints.txt ./services/client . \
    && /opt/venv/bin/pip uninstall --yes agentmesh \
    && rm -rf services/mesh gen build
COPY services/ services/
COPY gen/ gen/
# Installed in place (/app, the same path in the runtime stage): the code finds the contract's
# descriptor set and the gateway's Lua beside itself, as in a checkout.
RUN /opt/venv/bin/pip install --no-deps --editable . \
    && /opt/venv/bin/python -m compileall -q services gen \
    && /opt/venv/bin/python -c "from mesh import catalog; [catalog.definition(n) for n in catalog.names()]"

# ---- runtime: the slim base, the virtualenv, the code, a non-root user ----------------------
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 agentmesh \
    && useradd --system --uid 10001 --gid agentmesh --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin agentmesh
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    AGENTMESH_DATA_DIR=/tmp/agentmesh \
    AGENTMESH_HOST=0.0.0.0 \
    AGENTMESH_PORT=50051
# The chart's pods run as this user (runAsUser 10001) with a read-only root filesystem and an
# emptyDir at /tmp.
USER 10001:10001
EXPOSE 50051
ENTRYPOINT ["agentmesh"]
CMD ["--help"]
