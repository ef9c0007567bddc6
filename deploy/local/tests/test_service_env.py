"""What the local stack tells every service process: where it runs, what it may reach."""

from __future__ import annotations

from pathlib import Path

import pytest

from runyard.devstack import Stack
from runyard.devstack.services import SERVICES
from runyard.gateway.config import Settings as GatewaySettings
from runyard.webhooks.config import Settings as WebhooksSettings


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Stack:
    for service in SERVICES:  # nothing inherited from the shell decides it
        monkeypatch.delenv(f"{service.prefix}ENVIRONMENT", raising=False)
    stack = Stack(tmp_path)
    stack.service_database_urls = {s.name: "postgresql+asyncpg://x" for s in stack.services}
    return stack


def test_every_service_is_told_it_runs_in_dev(stack: Stack) -> None:
    for service in SERVICES:
        assert stack.service_env(service)[f"{service.prefix}ENVIRONMENT"] == "dev"


def test_the_webhooks_service_may_reach_loopback_only(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    webhooks = next(s for s in SERVICES if s.name == "webhooks")
    for name, value in stack.service_env(webhooks).items():
        if name.startswith("WEBHOOKS_"):
            monkeypatch.setenv(name, value)
    policy = WebhooksSettings().target_policy()
    policy.check_address("127.0.0.1", host="127.0.0.1")
    for refused in ("169.254.169.254", "fd00:ec2::254", "169.254.3.4", "fe80::1", "10.0.0.1"):
        with pytest.raises(OSError):
            policy.check_address(refused, host=refused)


def test_each_gateway_gets_its_metrics_listener_on_a_free_port(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = next(s for s in SERVICES if s.name == "gateway")
    for name, value in stack.service_env(gateway).items():
        if name.startswith("GATEWAY_"):
            monkeypatch.setenv(name, value)
    settings = GatewaySettings()
    assert (settings.metrics_host, settings.metrics_port) == ("127.0.0.1", 0)
