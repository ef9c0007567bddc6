from __future__ import annotations

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from runyard.shared.settings import ServiceSettings, dev_secret
from runyard.webhooks.ssrf import TargetPolicy


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="WEBHOOKS_", extra="ignore", frozen=True)
    service_name = "webhooks"

    #: Dev/test only (refused in production): plain http to any host, and loopback addresses
    #: (127.0.0.0/8, ::1) for a receiver on the same machine. Every other rule still holds:
    #: link-local, cloud metadata, private and other non-public addresses stay refused.
    allow_private_targets: bool = False
    #: Comma-separated hosts (``alerts.example.com`` or ``*.example.com``) that may be reached
    #: with plain ``http``. Their addresses are still checked.
    http_allowed_hosts: str = ""
    #: Encrypts stored signing secrets (a Fernet key is derived from it with SHA-256).
    secret_encryption_key: SecretStr = dev_secret("webhooks-secret-encryption-key")
    #: After a rotation the old secret keeps signing (a second signature) for this long.
    secret_rotation_overlap_hours: float = 24.0
    delivery_timeout_s: float = 15.0
    delivery_lease_margin_s: float = 30.0
    delivery_batch_size: int = 50
    delivery_concurrency: int = 20
    delivery_poll_interval_s: float = 0.5
    #: ``webhook.deliveries_updated`` is written once per endpoint and window of this long.
    delivery_events_window_s: float = Field(default=0.5, ge=0)
    #: How often the ``delivery-events`` worker looks for rows no commit of its process announced.
    delivery_events_poll_s: float = Field(default=5.0, gt=0)
    #: 429 answers and timeouts wait at least this long before the next try.
    throttled_retry_min_s: float = 60.0
    #: A ``Retry-After`` longer than this is cut to it.
    retry_after_max_s: float = 3600.0
    #: An endpoint is disabled once it has failed this many times in a row ...
    disable_after_failures: int = 20
    #: ... and its first failure of that run is at least this old.
    disable_after_failing_hours: float = 120.0
    #: Requests per second to a Slack endpoint unless its settings say otherwise.
    slack_rate_limit_per_second: float = 1.0
    #: Where people open Runyard; links in Slack and Teams messages start with it.
    public_base_url: str = "http://127.0.0.1:8000"
    dns_timeout_s: float = 5.0

    @model_validator(mode="after")
    def _no_private_targets_in_production(self) -> Settings:
        if self.allow_private_targets and self.environment not in ("dev", "test"):
            raise ValueError(
                f"allow_private_targets is refused in environment {self.environment!r}: "
                "deliveries there reach public addresses only"
            )
        return self

    def target_policy(self) -> TargetPolicy:
        """What deliveries may reach (checked on save and on every connection)."""
        return TargetPolicy(allow_private=self.allow_private_targets, http_hosts=self.http_hosts())

    def http_hosts(self) -> frozenset[str]:
        return frozenset(
            h.strip().lower().rstrip(".") for h in self.http_allowed_hosts.split(",") if h.strip()
        )
