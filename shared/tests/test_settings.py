from __future__ import annotations

import os
import socket
import ssl

import pytest
from pydantic import SecretStr, ValidationError
from pydantic_settings import SettingsConfigDict

from runyard.shared.settings import MIN_SECRET_BYTES, ServiceSettings, dev_secret

REAL = "k3Y-" + "x" * 40  # long enough for production
SHORT = "a-real-but-short-secret"  # 23 bytes


class DemoSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="DEMO_", extra="ignore", frozen=True)
    signing_key: SecretStr = dev_secret("signing-key")


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """As the test fixtures and the local stack do: the environment is always said."""
    monkeypatch.setenv("DEMO_ENVIRONMENT", "test")


def test_settings_read_their_own_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_KAFKA_BOOTSTRAP_SERVERS", "a:1,b:2")
    monkeypatch.setenv("OTHER_KAFKA_BOOTSTRAP_SERVERS", "wrong:9")
    settings = DemoSettings()
    assert settings.kafka_client_options() == {
        "bootstrap_servers": ["a:1", "b:2"],
        "security_protocol": "PLAINTEXT",
    }


def test_sasl_ssl_settings_reach_the_kafka_client_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("DEMO_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("DEMO_KAFKA_SASL_USERNAME", "runyard-demo")
    monkeypatch.setenv("DEMO_KAFKA_SASL_PASSWORD", "s3cret")
    options = DemoSettings().kafka_client_options()
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "runyard-demo"
    assert options["sasl_plain_password"] == "s3cret"
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    assert options["ssl_context"].verify_mode == ssl.CERT_REQUIRED


def test_an_unknown_kafka_security_protocol_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_KAFKA_SECURITY_PROTOCOL", "TLS")
    with pytest.raises(ValidationError, match="kafka_security_protocol"):
        DemoSettings()


def test_instance_names_the_process_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    assert DemoSettings().instance == f"{socket.gethostname()}-{os.getpid()}"
    monkeypatch.setenv("DEMO_INSTANCE_ID", "webhooks-7f9c-abcde")
    assert DemoSettings().instance == "webhooks-7f9c-abcde"


def test_default_secret_is_accepted_in_dev() -> None:
    assert (
        DemoSettings(environment="dev").signing_key.get_secret_value().startswith("dev-insecure-")
    )


def test_default_secret_is_refused_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_ENVIRONMENT", "production")
    with pytest.raises(ValidationError, match="signing_key: default development secret refused"):
        DemoSettings()


def test_real_secret_is_accepted_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_ENVIRONMENT", "production")
    monkeypatch.setenv("DEMO_SIGNING_KEY", REAL)
    monkeypatch.setenv("DEMO_IDENTITY_SECRET", REAL[::-1])
    assert DemoSettings().signing_key.get_secret_value() == REAL


# --- fail closed ------------------------------------------------------------------------------


def test_a_process_started_without_environment_refuses_to_load_and_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DEMO_ENVIRONMENT")
    with pytest.raises(ValidationError, match="DEMO_ENVIRONMENT is not set") as refused:
        DemoSettings()
    assert "dev, test or production" in str(refused.value)
    monkeypatch.setenv("DEMO_ENVIRONMENT", "")
    with pytest.raises(ValidationError, match="DEMO_ENVIRONMENT is not set"):
        DemoSettings()


def test_an_unknown_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_ENVIRONMENT", "prod")
    with pytest.raises(ValidationError, match="environment"):
        DemoSettings()


def test_production_refuses_a_secret_shorter_than_32_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_ENVIRONMENT", "production")
    monkeypatch.setenv("DEMO_SIGNING_KEY", SHORT)
    monkeypatch.setenv("DEMO_IDENTITY_SECRET", REAL)
    with pytest.raises(
        ValidationError, match=f"signing_key: shorter than {MIN_SECRET_BYTES} bytes"
    ):
        DemoSettings()
    monkeypatch.setenv("DEMO_SIGNING_KEY", "x" * (MIN_SECRET_BYTES - 1))
    with pytest.raises(ValidationError, match="signing_key: shorter than"):
        DemoSettings()
    monkeypatch.setenv("DEMO_SIGNING_KEY", "")
    with pytest.raises(ValidationError, match="signing_key: shorter than"):
        DemoSettings()
    monkeypatch.setenv("DEMO_SIGNING_KEY", "x" * MIN_SECRET_BYTES)
    assert DemoSettings().environment == "production"


def test_production_refuses_a_dev_default_even_when_it_is_long(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DEMO_ENVIRONMENT", "production")
    monkeypatch.setenv("DEMO_SIGNING_KEY", "dev-insecure-" + "x" * 40)
    monkeypatch.setenv("DEMO_IDENTITY_SECRET", REAL)
    with pytest.raises(ValidationError, match="signing_key: default development secret refused"):
        DemoSettings()


def test_a_refusal_names_the_settings_but_never_prints_a_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DEMO_ENVIRONMENT", "production")
    monkeypatch.setenv("DEMO_SIGNING_KEY", SHORT)
    monkeypatch.setenv("DEMO_IDENTITY_SECRET", REAL)
    monkeypatch.setenv("DEMO_KAFKA_SASL_PASSWORD", "broker-password-in-the-clear")
    with pytest.raises(ValidationError) as refused:
        DemoSettings()
    text = str(refused.value)
    assert "signing_key" in text
    for secret in (SHORT, REAL, "broker-password-in-the-clear"):
        assert secret not in text


def test_the_brokers_password_may_be_short_in_production_but_not_a_dev_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DEMO_ENVIRONMENT", "production")
    monkeypatch.setenv("DEMO_SIGNING_KEY", REAL)
    monkeypatch.setenv("DEMO_IDENTITY_SECRET", REAL)
    monkeypatch.setenv("DEMO_KAFKA_SASL_PASSWORD", "short")
    assert DemoSettings().kafka_sasl_password.get_secret_value() == "short"
    monkeypatch.setenv("DEMO_KAFKA_SASL_PASSWORD", "dev-insecure-CHANGE-ME")
    with pytest.raises(ValidationError, match="kafka_sasl_password: default development secret"):
        DemoSettings()
