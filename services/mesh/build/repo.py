"""Where the checkout is. The build tools are the only part of Agent Mesh that knows the
repository: they run from a checkout (an editable install) and write into it. Everything else
reads package resources (`mesh.resources`)."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
PROTOS_DIR = REPO_ROOT / "protos"
GEN_DIR = REPO_ROOT / "gen"
DESCRIPTOR_SET = GEN_DIR / "agentmesh" / "descriptor.binpb"
OPENAPI_JSON = GEN_DIR / "agentmesh" / "openapi.json"
