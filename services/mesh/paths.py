"""Where the repository's inputs and outputs live, found from this file."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PROTOS_DIR = REPO_ROOT / "protos"
GEN_DIR = REPO_ROOT / "gen"
DESCRIPTOR_SET = GEN_DIR / "agentmesh" / "descriptor.binpb"
OPENAPI_JSON = GEN_DIR / "agentmesh" / "openapi.json"
