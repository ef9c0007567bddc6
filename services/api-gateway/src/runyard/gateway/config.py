from pydantic import Field
from pydantic_settings import SettingsConfigDict

from runyard.shared.settings import ServiceSettings

JWKS_PATH = "/api/v1/auth/.well-known/jwks.json"


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore", frozen=True)
    service_name = "gateway"

    auth_url: str = "http://127.0.0.1:8101"
    experiments_url: str = "http://127.0.0.1:8102"
    notifications_url: str = "http://127.0.0.1:8103"
    webhooks_url: str = "http://127.0.0.1:8104"
    #: the web console: every path outside the API and the gateway's own goes there
    console_url: str = "http://127.0.0.1:8105"
    #: Empty means ``<auth_url>/api/v1/auth/.well-known/jwks.json``.
    jwks_url: str = ""
    jwt_issuer: str = "runyard"
    jwt_audience: str = "runyard-api"
    jwt_leeway_s: float = 10.0
    #: An unknown ``kid`` triggers a JWKS refetch at most this often.
    jwks_min_refresh_interval_s: float = 5.0
    #: Known keys are refreshed after this long (so a key removed by auth stops being trusted).
    jwks_max_age_s: float = 300.0
    upstream_connect_timeout_s: float = 5.0
    upstream_timeout_s: float = 60.0
    upstream_pool_size: int = 200
    max_body_bytes: int = 10 * 1024 * 1024
    #: Artifact uploads (``PUT /api/v1/experiments/{id}/artifacts/{path}`` and every PUT under
    #: MLflow's ``/api/2.0/mlflow-artifacts/`` or ``/ajax-api/...``) stream through with
    #: this limit instead of ``max_body_bytes`` (the experiments service applies its own, lower
    #: or equal, limit and the user's quota), and this whole-request timeout.
    max_upload_bytes: int = 5 * 1024**3
    upload_timeout_s: float = 3600.0
    openapi_cache_s: float = 5.0
    openapi_fetch_timeout_s: float = 3.0
    #: How long auth's answer about an API key is reused: a revoked key works at most this long.
    api_key_cache_s: float = 5.0
    #: How long a session's state is reused: a logged-out session's token works at most this long.
    session_cache_s: float = 5.0
    #: How long the access token of a verified Basic login (MLflow paths) is reused before the
    #: credentials are checked with auth again (never past the token's expiry). Every check runs
    #: the login's steps at auth, on the user's one Basic session (ADR 0021); the session is still
    #: checked every ``session_cache_s``, so a password change or revocation stops the cached token.
    basic_auth_cache_s: float = Field(default=300.0, ge=0.0)
    internal_timeout_s: float = 3.0
    #: Per-area whole-request timeouts, ``area=seconds`` comma-separated (``dataset-imports=300``;
    #: ``mlflow`` names MLflow's paths); areas not named use ``upstream_timeout_s``.
    upstream_timeouts: str = ""
    #: Request bodies up to this size are read whole before forwarding; larger ones are streamed.
    stream_threshold_bytes: int = 1024 * 1024
    #: Comma-separated addresses or CIDRs of proxies in front of the gateway whose
    #: ``X-Forwarded-For`` is believed; empty: the TCP peer is the client.
    trusted_proxies: str = ""
    rate_limit_enabled: bool = True
    #: Requests per minute per user (bearer tokens); the bucket holds one minute's worth.
    rate_limit_user_per_minute: int = 12000
    #: Requests per minute for an API key whose own ``rate_limit`` is empty.
    rate_limit_api_key_per_minute: int = 6000
    #: Requests per minute per client IP to login, register and refresh.
    rate_limit_login_per_ip_per_minute: int = 60
    #: Unknown or expired API keys per minute per client IP; past it, every request of that IP
    #: with an ``X-API-Key`` gets 429 before auth is asked (on even with ``rate_limit_enabled``
    #: off: it stops key guessing).
    rate_limit_failed_api_keys_per_ip_per_minute: int = Field(default=30, ge=1)
    request_log_enabled: bool = True
    #: Request log entries waiting to be written; beyond it entries are dropped (and counted).
    request_log_queue_size: int = 10000
    request_log_batch_size: int = 500
    request_log_flush_interval_s: float = 1.0
    #: First bytes of request and response bodies kept (redacted) as payload samples; 0: none.
    request_log_sample_bytes: int = 2048
    request_log_retention_days: float = 30.0
    metrics_rollup_interval_s: float = 15.0
    #: ``/metrics`` is served on its own listener, never on the API port; ``0.0.0.0`` to let a
    #: Prometheus outside the pod scrape it.
    metrics_host: str = "127.0.0.1"
    #: Port of that listener; 0: any free port (logged as ``gateway.metrics.listening``).
    metrics_port: int = Field(default=9100, ge=0, le=65535)
    #: Consecutive connection failures or timeouts that open an upstream's circuit.
    circuit_failure_threshold: int = 5
    #: How long an open circuit answers 503 before one trial request is let through.
    circuit_open_s: float = 10.0
    #: Comma-separated origins allowed by CORS (``*`` for any); empty: no CORS headers.
    cors_allow_origins: str = ""
    cors_allow_credentials: bool = False
    cors_max_age_s: int = 600
    security_headers_enabled: bool = True
    #: ``Strict-Transport-Security`` max-age; 0 sends no HSTS header (set it behind TLS).
    hsts_max_age_s: int = 0

    def upstreams(self) -> dict[str, str]:
        """Service name -> base URL (no trailing slash)."""
        return {
            "auth": self.auth_url.rstrip("/"),
            "experiments": self.experiments_url.rstrip("/"),
            "notifications": self.notifications_url.rstrip("/"),
            "webhooks": self.webhooks_url.rstrip("/"),
        }

    def area_timeouts(self) -> dict[str, float]:
        timeouts: dict[str, float] = {}
        for item in self.upstream_timeouts.split(","):
            area, _, seconds = item.partition("=")
            if area.strip():
                timeouts[area.strip()] = float(seconds)
        return timeouts

    def cors_origins(self) -> list[str]:
        return [o.strip() for o in self.cors_allow_origins.split(",") if o.strip()]

    def jwks_endpoint(self) -> str:
        return self.jwks_url or f"{self.auth_url.rstrip('/')}{JWKS_PATH}"
