from __future__ import annotations

import os
import socket
import ssl

import pytest
from pydantic import SecretStr, ValidationError
from pydantic_settings import SettingsConfigDict

from runyard.shared.settings import ServiceSettings, dev_secret


class DemoSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="DEMO_", extra="ignore", frozen=True)
    signing_key: SecretStr = dev_secret("signing-key")


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
    monkeypatch.setenv("DEMO_SIGNING_KEY", "a-real-secret-from-the-vault")
    monkeypatch.setenv("DEMO_IDENTITY_SECRET", "another-real-secret")
    assert DemoSettings().signing_key.get_secret_value() == "a-real-secret-from-the-vault"
