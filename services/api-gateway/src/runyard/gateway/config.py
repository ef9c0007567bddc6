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
    openapi_cache_s: float = 5.0
    openapi_fetch_timeout_s: float = 3.0
    #: How long auth's answer about an API key is reused: a revoked key works at most this long.
    api_key_cache_s: float = 5.0
    #: How long a session's state is reused: a logged-out session's token works at most this long.
    session_cache_s: float = 5.0
    internal_timeout_s: float = 3.0

    def upstreams(self) -> dict[str, str]:
        """Service name -> base URL (no trailing slash)."""
        return {
            "auth": self.auth_url.rstrip("/"),
            "experiments": self.experiments_url.rstrip("/"),
            "notifications": self.notifications_url.rstrip("/"),
            "webhooks": self.webhooks_url.rstrip("/"),
        }

    def jwks_endpoint(self) -> str:
        return self.jwks_url or f"{self.auth_url.rstrip('/')}{JWKS_PATH}"
