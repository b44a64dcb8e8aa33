"""The gateway reads the settings the services read: a non-default JWT issuer and audience
(`AGENTMESH_JWT_ISSUER`, `AGENTMESH_JWT_AUDIENCE`) are what identity signs and what Envoy
verifies, so logging in and reading through the gateway still works."""

from __future__ import annotations

import base64
import json

from tests.conftest import assert_envelope, register, start_mesh, stop_mesh

ISSUER = "https://login.example.test/agentmesh"
AUDIENCE = "example-agentmesh-api"


def _claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_custom_jwt_issuer_and_audience_reach_the_gateway(tmp_path):
    mesh = start_mesh(tmp_path / "custom-jwt", extra_env={
        "AGENTMESH_JWT_ISSUER": ISSUER, "AGENTMESH_JWT_AUDIENCE": AUDIENCE})
    try:
        envoy = json.loads((mesh.data_dir / "envoy.json").read_text())
        assert ISSUER in json.dumps(envoy) and AUDIENCE in json.dumps(envoy)
        tenant = register(mesh)
        with mesh.client() as client:
            login = client.post("/api/v1/auth/login",
                                json={"email": tenant.email, "password": tenant.password})
        assert login.status_code == 200, login.text
        token = login.json()["access_token"]
        assert _claims(token)["iss"] == ISSUER and _claims(token)["aud"] == AUDIENCE
        with mesh.client(token) as client:
            me = client.get("/api/v1/auth/me")
            assert me.status_code == 200, me.text
            assert me.json()["email"] == tenant.email
            created = client.post("/api/v1/agents", json={"name": "settings-check"})
            assert created.status_code == 200, created.text
            assert client.get("/api/v1/agents").json()["total"] == 1
        with mesh.client("not-a-token") as client:
            assert_envelope(client.get("/api/v1/auth/me"), 401, "UNAUTHENTICATED")
    finally:
        stop_mesh(mesh)
