"""Typed settings from `AGENTMESH_*` environment variables (pydantic-settings)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AGENTMESH_", extra="ignore")

    environment: Literal["development", "production"] = "development"
    data_dir: Path = Path(".agentmesh")
    # Empty: one SQLite file per service in data_dir. Otherwise a SQLAlchemy URL such as
    # postgresql+psycopg://user@127.0.0.1:5432/agentmesh (each service uses its own schema).
    database_url: str = ""
    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "json"

    # Where this process listens (agentmesh serve) and where its peers are.
    host: str = "127.0.0.1"
    port: int = 0
    # `service=host:port,...`: addresses of the services, for internal gRPC calls
    # (mesh.runtime.peers). A process serving several services binds each at its address here.
    peers: str = ""

    # Tokens. The issuer and audience must match the gateway's jwt_authn provider.
    jwt_issuer: str = "agentmesh"
    jwt_audience: str = "agentmesh-api"
    access_token_ttl_seconds: int = Field(default=900, ge=30)
    refresh_token_ttl_seconds: int = Field(default=30 * 24 * 3600, ge=60)
    # Signing keys rotate after this many seconds; the next key is published in the JWKS
    # ahead of use so that gateways have it cached before the first token it signs.
    signing_key_rotation_seconds: int = Field(default=30 * 24 * 3600, ge=60)

    # OpenTelemetry: spans are exported only when an OTLP endpoint is set.
    otel_exporter_otlp_endpoint: str = ""

    grace_period_seconds: float = 10.0

    # Outbound HTTP from tools, MCP servers and model endpoints (mesh.runtime.egress): hosts and
    # CIDRs allowed although internal (loopback, private, link-local); empty by default.
    egress_allow: str = ""

    @model_validator(mode="after")
    def _production_needs_a_database(self) -> "Settings":
        if self.environment == "production" and not self.database_url:
            raise ValueError("AGENTMESH_DATABASE_URL is required in production")
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
