from __future__ import annotations

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
    assert settings.kafka_client_options() == {"bootstrap_servers": ["a:1", "b:2"]}


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
