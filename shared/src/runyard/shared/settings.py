"""Service settings: one pydantic-settings class per service, each with its own env prefix.

Fail closed: ``<PREFIX>ENVIRONMENT`` has no default (the local stack, the test fixtures and the
manifests set it), and in ``production`` every secret must be a real one: not a shipped
development default and at least ``MIN_SECRET_BYTES`` long. A refusal names the settings, never
their values (``hide_input_in_errors``: a validation error would otherwise print every input).
"""

from __future__ import annotations

import os
import socket
from typing import Any, ClassVar, Literal

from pydantic import SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Environment = Literal["dev", "test", "production"]
KafkaSecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]

#: Every secret's shipped default starts with this marker; outside dev/test it is refused.
DEV_SECRET_MARKER = "dev-insecure-"
#: The shortest secret production accepts (256 bits of a random key, or a long passphrase).
MIN_SECRET_BYTES = 32


def dev_secret(name: str) -> SecretStr:
    """A default for a secret that only dev and test may run with."""
    return SecretStr(f"{DEV_SECRET_MARKER}{name}")


class ServiceSettings(BaseSettings):
    """Settings every service shares. Subclasses set their ``env_prefix`` (``AUTH_`` ...)."""

    model_config = SettingsConfigDict(
        env_prefix="RUNYARD_", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    service_name: ClassVar[str] = "service"
    #: Secrets another system issues (the broker's password): refused in production when they
    #: are a development default, but their length is that system's business.
    external_credentials: ClassVar[frozenset[str]] = frozenset({"kafka_sasl_password"})

    #: ``dev``, ``test`` or ``production``; no default: every process says where it runs
    environment: Environment
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/runyard"
    db_pool_size: int = 10
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_security_protocol: KafkaSecurityProtocol = "PLAINTEXT"
    #: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (with SASL_PLAINTEXT / SASL_SSL)
    kafka_sasl_mechanism: str = ""
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = SecretStr("")
    #: CA bundle to verify the brokers' certificates (SSL / SASL_SSL); empty: the system's CAs
    kafka_ssl_cafile: str = ""
    #: names this process in logs, Kafka client ids and Postgres application_name; empty:
    #: ``<hostname>-<pid>`` (on Kubernetes the hostname is the pod name)
    instance_id: str = ""
    log_level: str = "INFO"
    log_json: bool | None = None
    outbox_batch_size: int = 500
    #: the relay's fallback poll: LISTEN/NOTIFY wakes it at every commit that adds outbox rows
    outbox_poll_interval_s: float = 10.0
    outbox_retention_hours: float = 24.0
    #: after the broker lost acknowledged records, republish the rows published this long ago
    outbox_replay_window_s: float = 600.0
    consumer_max_attempts: int = 3
    #: how long the broker may hold an empty fetch; Tansu answers at about this time even when
    #: records arrive meanwhile, so it bounds the consumer's latency while it fetches
    consumer_fetch_max_wait_ms: int = 100
    #: pause each partition after this long without a record, so that fetches name only the
    #: busy ones and an idle consumer sends the broker no fetch at all; a relay's NOTIFY (same
    #: database) naming a topic resumes its partitions (0: never pause)
    consumer_idle_pause_after_s: float = 2.0
    #: while paused, ask the broker this often whether a partition has records after all (from
    #: a producer that did not notify): the latency bound for those records
    consumer_idle_check_s: float = 5.0
    consumer_retry_backoff_s: float = 0.2
    #: a record value larger than this goes to the DLQ (reason ``oversized``) unread
    consumer_max_record_bytes: int = 1024 * 1024
    run_workers: bool = True
    #: HMAC key the gateway signs forwarded identities with; the same value on every service
    identity_secret: SecretStr = dev_secret("identity-signing")

    @model_validator(mode="before")
    @classmethod
    def _require_environment(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("environment"):
            prefix = str(cls.model_config.get("env_prefix", "")).upper()
            raise ValueError(
                f"{prefix}ENVIRONMENT is not set: set it to dev, test or production "
                "(only the local stack and the test fixtures set it for you)"
            )
        return data

    @model_validator(mode="after")
    def _refuse_weak_secrets(self) -> ServiceSettings:
        if self.environment in ("dev", "test"):
            return self
        refused: list[str] = []
        for name in sorted(type(self).model_fields):
            value = getattr(self, name)
            if not isinstance(value, SecretStr):
                continue
            raw = value.get_secret_value()
            if raw.startswith(DEV_SECRET_MARKER):
                refused.append(f"{name}: default development secret refused")
            elif name not in self.external_credentials and len(raw.encode()) < MIN_SECRET_BYTES:
                refused.append(f"{name}: shorter than {MIN_SECRET_BYTES} bytes")
        if refused:
            raise ValueError(
                f"{'; '.join(refused)} in environment {self.environment!r}; set real, random values"
            )
        return self

    @property
    def instance(self) -> str:
        return self.instance_id or f"{socket.gethostname()}-{os.getpid()}"

    def kafka_client_options(self) -> dict[str, Any]:
        """Connection options for every aiokafka client (producer, consumer, admin)."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.kafka_bootstrap_servers.split(","),
            "security_protocol": self.kafka_security_protocol,
        }
        if self.kafka_security_protocol in ("SSL", "SASL_SSL"):
            from aiokafka.helpers import create_ssl_context

            options["ssl_context"] = create_ssl_context(cafile=self.kafka_ssl_cafile or None)
        if self.kafka_security_protocol.startswith("SASL_"):
            options["sasl_mechanism"] = self.kafka_sasl_mechanism or "PLAIN"
            options["sasl_plain_username"] = self.kafka_sasl_username
            options["sasl_plain_password"] = self.kafka_sasl_password.get_secret_value()
        return options
