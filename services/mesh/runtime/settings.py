"""Typed settings from `AGENTMESH_*` environment variables (pydantic-settings)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
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
    # Calls to a service this process serves at its peer address are made in-process, without
    # gRPC's transport (mesh.runtime.local); false: every call over gRPC.
    local_calls: bool = True
    # Which replica of its service this process is (`agents-1`, a pod's name): names the
    # process's durable work (the workflows service's DBOS executor). Empty: the only one.
    replica_id: str = ""

    # The tenants that operate the platform, by name (comma-separated): only their admins hold
    # `platform:read` (the platform's inside: addresses, config, host and all-tenant metrics)
    # and `system:write` (platform config, restarts, caches, backups); every other tenant's
    # admin holds everything else. Empty: the first tenant ever registered.
    operator_tenants: str = ""

    # Tokens. The issuer and audience must match the gateway's jwt_authn provider.
    jwt_issuer: str = "agentmesh"
    jwt_audience: str = "agentmesh-api"
    access_token_ttl_seconds: int = Field(default=900, ge=30)
    refresh_token_ttl_seconds: int = Field(default=30 * 24 * 3600, ge=60)
    # Signing keys rotate after this many seconds; the next key is published in the JWKS
    # ahead of use so that gateways have it cached before the first token it signs.
    signing_key_rotation_seconds: int = Field(default=30 * 24 * 3600, ge=60)

    # Secrets (masterdata): the key-encryption key, base64 of 32 bytes, and its id. Empty: a key
    # file made on first run in data_dir (mode 0600). Never stored in a database. Keys that older
    # data keys are still wrapped with, until `agentmesh secrets rotate` re-wraps them:
    # `id=base64,...`. See docs/secrets.md.
    secrets_kek: str = Field(default="", repr=False)
    secrets_kek_id: str = "kek-1"
    secrets_previous_keks: str = Field(default="", repr=False)

    # The shared token the platform's own processes present to endpoints only they may use
    # (the OTLP span receiver; mesh.runtime.internal). Empty: DATA_DIR/internal-token, made on
    # first run; required in production (every replica must hold the same one).
    internal_token: str = Field(default="", repr=False)

    # TLS for internal gRPC (listeners, channels between services, the gateway's upstreams),
    # off when empty: PEM files (mesh.runtime.tls, docs/deployment.md).
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_ca_file: str = ""
    tls_client_auth: bool = False  # listeners require a client certificate from the CA
    tls_server_name: str = ""  # the name in the services' certificates, if not the host

    # OpenTelemetry: spans are exported only when an OTLP endpoint is set, with the standard
    # variables (OTEL_EXPORTER_OTLP_ENDPOINT, _HEADERS, OTEL_SERVICE_NAME, OTEL_TRACES_SAMPLER...,
    # read by mesh.runtime.telemetry; agentmesh up points it at the observability service). The
    # gateway samples this percentage of requests (1 by default; raise it while investigating);
    # a service records spans only for sampled calls.
    # Deprecated alias of OTEL_EXPORTER_OTLP_ENDPOINT (host:port, plaintext), read when that is
    # unset; removed in the next release.
    otel_exporter_otlp_endpoint: str = ""
    trace_sample_percent: float = Field(default=1.0, ge=0, le=100)
    # The gateway's rate limits (docs/rate-limits.md), beside the per-tenant one `agentmesh up
    # --rate-limit` sets: per client IP on every request (0: 10x the tenant limit) and per
    # client IP on the credential routes (register, login, refresh).
    gateway_ip_rate_limit: int = Field(default=0, ge=0)
    gateway_auth_rate_limit: int = Field(default=60, ge=1)
    # Envoy's global rate-limit filter asking governance's RateLimitService, whose counters
    # (Redis) hold across gateway replicas; the domain keeps one platform's keys apart.
    gateway_global_rate_limit: bool = False
    rate_limit_domain: str = "agentmesh"
    # The gateway's metrics listener (Envoy's Prometheus stats only); 0: agentmesh up picks a
    # free port.
    gateway_metrics_port: int = Field(default=0, ge=0)
    # Prometheus: this process serves its metrics over HTTP on this port (0 = not served).
    metrics_port: int = 0
    # The observability service gathers these for GET /metrics: comma-separated URLs of
    # Prometheus text endpoints (other service processes, the gateway's admin stats).
    metrics_targets: str = ""
    # Retention of spans, logs and events (observability), and how often it is enforced.
    retention_days: float = Field(default=7, gt=0)
    retention_prune_seconds: float = Field(default=3600, gt=0)
    # The audit trail (mesh.runtime.audit): how long observability keeps it, and how long a
    # service keeps the events it has forwarded.
    audit_retention_days: float = Field(default=365, gt=0)
    audit_local_retention_days: float = Field(default=7, gt=0)
    # How often the observability service evaluates the tenants' alert rules.
    alert_evaluation_seconds: float = Field(default=30, gt=0)

    grace_period_seconds: float = 10.0

    # Workflows: what one execution may grow to, and each tenant's share of the engine
    # (docs/workflows.md "Limits and fair share", docs/budgets.md).
    # Sub-workflow nesting below a root execution (the root is depth 0): a step that would
    # start a child deeper fails with SUB_WORKFLOW_DEPTH_EXCEEDED.
    workflow_max_depth: int = Field(default=8, ge=1, le=100)
    # Child executions one root execution may start in all, at every depth: the next one fails
    # its step with SUB_WORKFLOW_FANOUT_EXCEEDED.
    workflow_max_descendants: int = Field(default=64, ge=0)
    # Steps a definition may hold (400 TOO_MANY_STEPS when saved), so steps an execution runs.
    workflow_max_steps: int = Field(default=200, ge=1)
    # Steps of one execution running at the same time (a wide wave or parallel step waits).
    workflow_max_parallel_steps: int = Field(default=16, ge=1)
    # Root executions running at once per replica (the DBOS queue's worker concurrency), and
    # of those at most this many per tenant (its partition's share).
    workflow_queue_concurrency: int = Field(default=64, ge=1)
    workflow_tenant_concurrency: int = Field(default=8, ge=1)
    # A pure workflow (transforms and conditions with bounded expressions) runs in the call
    # that starts it, written once when it ends (mesh.workflows.inline); false queues it.
    workflow_inline: bool = True
    # Per tenant: executions queued, running or waiting for approval (children included);
    # past it 429 EXECUTION_QUOTA_EXCEEDED.
    tenant_max_live_executions: int = Field(default=500, ge=1)
    # Per tenant: schedules (429 SCHEDULE_QUOTA_EXCEEDED), and the shortest time between two
    # fires of one schedule (a cron firing more often is 400 on `cron`).
    tenant_max_schedules: int = Field(default=50, ge=0)
    schedule_min_interval_seconds: float = Field(default=60.0, ge=1)

    # Runtime configuration (mesh.runtime.live): each process long-polls the system service
    # for log levels, retention, feature flags and cache clears, and gets a change the system
    # process commits at once. This is how often the system service, while calls are held,
    # looks for changes committed by another process (another replica: on SQLite a stat of
    # the database files, on PostgreSQL a query), and how long a process waits before asking
    # again after a failed call.
    live_poll_seconds: float = Field(default=2.0, gt=0, le=60)
    # The system service's sampler (mesh.system.sampler): every this many seconds it records
    # CPU, memory, disk and request rates, and checks every service's health; it keeps
    # `system_history_seconds` of samples.
    system_sample_seconds: float = Field(default=15.0, ge=1, le=3600)
    system_history_seconds: float = Field(default=3600.0, ge=60, le=7 * 24 * 3600)
    # `agentmesh up` sets this for its children: where the supervisor watches for restart
    # requests (docs/system.md). Empty: no supervisor (Kubernetes, a bare `agentmesh serve`).
    supervisor_control_dir: str = ""

    # Token revocation (mesh/runtime/revocation.py): every process long-polls the revocation
    # list from identity and gets a revocation the identity process commits at once. This is
    # how often identity, while calls are held, looks for revocations committed by another
    # process (another replica: on SQLite a stat of the database files, on PostgreSQL a
    # query), so a revoked token is refused at most about this long (plus a read and a round
    # trip) after the revocation; and how long a process waits before asking again after a
    # failed call.
    revocation_poll_seconds: float = Field(default=1.0, gt=0, le=30)
    # Idempotency-Key (mesh/runtime/idempotency.py): how long a create's first answer is kept.
    idempotency_ttl_seconds: int = Field(default=24 * 3600, ge=60)
    # Login throttling (identity): failures allowed before back-off starts, per account and
    # per client IP; the back-off then doubles from base up to max.
    login_free_failures_per_account: int = Field(default=5, ge=1)
    login_free_failures_per_ip: int = Field(default=20, ge=1)
    login_backoff_base_seconds: float = Field(default=1.0, gt=0)
    login_backoff_max_seconds: float = Field(default=900.0, gt=0)
    # Outbound HTTP from tools, MCP servers and model endpoints (mesh.runtime.egress): hosts and
    # CIDRs allowed although internal (loopback, private, link-local); empty by default.
    egress_allow: str = ""
    # Live events (mesh.runtime.events, docs/live-events.md): a NATS server with JetStream
    # (`nats://127.0.0.1:4222`) that every service publishes to and every replica of the live
    # service reads from. Empty: events go to the one live service of `agentmesh up` directly.
    nats_url: str = ""
    # The live service's WebSocket listener (its gRPC port serves CreateTicket).
    live_ws_port: int = 0
    # The integration service's MCP listener (Streamable HTTP, docs/mcp.md), which the gateway
    # routes /api/v1/mcp to; 0: none.
    mcp_port: int = 0
    # While an MCP client keeps its GET stream open, its tools and prompts are listed this
    # often (as the client) to send list-changed notifications (mesh/integration/mcp_listener.py).
    mcp_list_poll_seconds: float = Field(default=5.0, gt=0)
    # A socket whose client has not taken a message for this long is closed (4008, "too slow");
    # it may resume with its last seq.
    live_send_timeout_seconds: float = Field(default=10.0, gt=0)

    # The sandbox (mesh.runtime.sandbox, docs/budgets.md): worker processes where untrusted
    # computation runs under a deadline that kills it (builtin tools, JMESPath expressions,
    # template and prompt rendering). Workers start on first use; one tenant holds at most
    # `sandbox_workers_per_tenant` of them at once. Inputs and results are JSON, capped; a
    # worker's address space is capped at `sandbox_memory_mb` (0: no cap).
    sandbox_workers: int = Field(default=2, ge=1, le=64)
    sandbox_workers_per_tenant: int = Field(default=1, ge=1, le=64)
    sandbox_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    sandbox_max_input_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    sandbox_max_result_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    sandbox_memory_mb: int = Field(default=1024, ge=0)
    # Rendering (templates, prompts, workflow text): the size a rendering would have is
    # computed from its placeholders and values before it is built; past this it is refused
    # (400 RENDERED_TOO_LARGE). Texts may hold at most `render_max_placeholders` placeholders.
    render_max_bytes: int = Field(default=1024 * 1024, ge=1024)
    render_max_placeholders: int = Field(default=1000, ge=1)
    # Quotas per tenant (429 RESOURCE_EXHAUSTED): open WebSockets on a live replica
    # (WEBSOCKET_QUOTA_EXCEEDED), and stored resources of each kind: agents, tools, workflows,
    # prompts, templates, ... (RESOURCE_QUOTA_EXCEEDED). `resource_quotas` overrides the default
    # per kind: `agent=500,tool=200` (kinds are the resources' nouns: agent, tool, workflow,
    # prompt, template, skill, constraint, model, secret, policy, webhook, api_connection,
    # alert, api_key, user, feature_flag); versions (prompt_version, template_version,
    # agent_version, workflow version, policy_version) count against `version_quota_per_kind`.
    live_max_sockets_per_tenant: int = Field(default=100, ge=1)
    resource_quota_per_kind: int = Field(default=10_000, ge=1)
    version_quota_per_kind: int = Field(default=100_000, ge=1)
    resource_quotas: str = ""

    @field_validator("resource_quotas")
    @classmethod
    def _quotas_are_kind_equals_number(cls, value: str) -> str:
        for item in filter(None, (part.strip() for part in value.split(","))):
            kind, _, number = item.partition("=")
            if not kind.strip() or not number.strip().isdigit() or int(number) < 1:
                raise ValueError(f"AGENTMESH_RESOURCE_QUOTAS: {item!r} is not kind=number "
                                 "(e.g. agent=500,tool=200)")
        return value

    @property
    def peer_addresses(self) -> dict[str, str]:
        """`peers` as {service: "host:port"}."""
        return parse_peers(self.peers)

    @model_validator(mode="after")
    def _production_needs_a_database(self) -> "Settings":
        if self.environment == "production" and not self.database_url:
            raise ValueError("AGENTMESH_DATABASE_URL is required in production")
        return self

    @model_validator(mode="after")
    def _tls_files_come_together(self) -> "Settings":
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError("AGENTMESH_TLS_CERT_FILE and AGENTMESH_TLS_KEY_FILE go together")
        if self.tls_client_auth and not (self.tls_ca_file and self.tls_cert_file):
            raise ValueError("AGENTMESH_TLS_CLIENT_AUTH needs AGENTMESH_TLS_CA_FILE and a "
                             "certificate (AGENTMESH_TLS_CERT_FILE, AGENTMESH_TLS_KEY_FILE)")
        return self

    @model_validator(mode="after")
    def _tenant_share_within_the_queue(self) -> "Settings":
        if self.workflow_tenant_concurrency > self.workflow_queue_concurrency:
            raise ValueError("AGENTMESH_WORKFLOW_TENANT_CONCURRENCY must not exceed "
                             "AGENTMESH_WORKFLOW_QUEUE_CONCURRENCY")
        return self


def parse_peers(text: str) -> dict[str, str]:
    """`a=host:1,b=host:2` -> {"a": "host:1", "b": "host:2"}."""
    peers = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, address = item.partition("=")
        if not sep or not name.strip() or ":" not in address:
            raise ValueError(f"AGENTMESH_PEERS entry {item!r} is not service=host:port")
        peers[name.strip()] = address.strip()
    return peers


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
