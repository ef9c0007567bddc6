"""Service settings: one pydantic-settings class per service, each with its own env prefix."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Environment = Literal["dev", "test", "production"]

#: Every secret's shipped default starts with this marker; outside dev/test it is refused.
DEV_SECRET_MARKER = "dev-insecure-"


def dev_secret(name: str) -> SecretStr:
    """A default for a secret that only dev and test may run with."""
    return SecretStr(f"{DEV_SECRET_MARKER}{name}")


class ServiceSettings(BaseSettings):
    """Settings every service shares. Subclasses set their ``env_prefix`` (``AUTH_`` ...)."""

    model_config = SettingsConfigDict(env_prefix="RUNYARD_", extra="ignore", frozen=True)

    service_name: ClassVar[str] = "service"

    environment: Environment = "dev"
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/runyard"
    db_pool_size: int = 10
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    log_level: str = "INFO"
    log_json: bool | None = None
    outbox_batch_size: int = 500
    outbox_poll_interval_s: float = 1.0
    outbox_retention_hours: float = 24.0
    consumer_max_attempts: int = 3
    consumer_retry_backoff_s: float = 0.2
    run_workers: bool = True
    #: HMAC key the gateway signs forwarded identities with; the same value on every service
    identity_secret: SecretStr = dev_secret("identity-signing")

    @model_validator(mode="after")
    def _refuse_default_secrets(self) -> ServiceSettings:
        if self.environment in ("dev", "test"):
            return self
        insecure = [
            name
            for name in type(self).model_fields
            if isinstance(value := getattr(self, name), SecretStr)
            and value.get_secret_value().startswith(DEV_SECRET_MARKER)
        ]
        if insecure:
            raise ValueError(
                f"{', '.join(sorted(insecure))}: default development secret refused in "
                f"environment {self.environment!r}; set a real value"
            )
        return self

    def kafka_client_options(self) -> dict[str, Any]:
        return {"bootstrap_servers": self.kafka_bootstrap_servers.split(",")}
