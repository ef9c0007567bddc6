"""docker-compose.yml stays consistent with the service table and the settings names.

(No Docker engine runs here; this is the check that the file describes a stack that can start.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from runyard.devstack.services import SERVICES

ROOT = Path(__file__).resolve().parents[3]
APP_SERVICES = [s.name for s in SERVICES]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data["services"]


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def _host_of(url: str) -> tuple[str | None, int | None]:
    parts = urlsplit(url)
    return parts.hostname, parts.port


def _uvicorn_port(service: dict[str, Any]) -> int:
    command = service["command"]
    assert isinstance(command, list), "write commands as lists"
    assert "uvicorn" in command[0] and "--factory" in command
    return int(command[command.index("--port") + 1])


def _published_host_ports(service: dict[str, Any]) -> list[str]:
    return [str(p).rsplit(":", 1)[0] for p in service.get("ports", []) if ":" in str(p)]


def test_every_service_has_an_image_or_a_build(compose: dict[str, Any]) -> None:
    for name, service in compose.items():
        assert service.get("image") or service.get("build"), name


def test_the_app_services_are_built_from_the_one_dockerfile(compose: dict[str, Any]) -> None:
    assert (ROOT / "deploy/docker/Dockerfile").exists()
    for name in [*APP_SERVICES, "migrate"]:
        build = compose[name]["build"]
        assert build["context"] == "."
        assert build["dockerfile"] == "deploy/docker/Dockerfile"
        assert compose[name]["image"] == compose["gateway"]["image"]


def test_each_app_service_runs_its_own_factory(compose: dict[str, Any]) -> None:
    for service in SERVICES:
        command = compose[service.name]["command"]
        assert service.app in command
        assert _uvicorn_port(compose[service.name]) == service.port


def test_app_services_use_the_compose_database_and_broker(compose: dict[str, Any]) -> None:
    for service in SERVICES:
        env = _env(compose[service.name])
        for broker in env[f"{service.prefix}KAFKA_BOOTSTRAP_SERVERS"].split(","):
            assert broker.split(":")[0] == "kafka", service.name
        assert env[f"{service.prefix}ENVIRONMENT"] == "dev"
        if not service.database:  # the console: no tables of its own
            assert f"{service.prefix}DATABASE_URL" not in _env(compose["migrate"])
            continue
        db_host, _ = _host_of(env[f"{service.prefix}DATABASE_URL"])
        assert db_host == "postgres", service.name
        assert env[f"{service.prefix}DATABASE_URL"].startswith("postgresql+asyncpg://")
        # the migrate job provisions exactly the role the service logs in with
        assert (
            _env(compose["migrate"])[f"{service.prefix}DATABASE_URL"]
            == (env[f"{service.prefix}DATABASE_URL"])
        )


def test_notifications_send_mail_to_the_compose_mail_server(compose: dict[str, Any]) -> None:
    host, port = _host_of(_env(compose["notifications"])["NOTIFICATIONS_SMTP_URL"])
    assert host in compose and port == 1025


def test_published_ports_are_unique_and_the_gateway_is_on_8000(compose: dict[str, Any]) -> None:
    published = [p for s in compose.values() for p in _published_host_ports(s)]
    assert len(published) == len(set(published)), published
    assert "8000" in _published_host_ports(compose["gateway"])


def test_depends_on_names_existing_services(compose: dict[str, Any]) -> None:
    for name, service in compose.items():
        for dependency in service.get("depends_on", []):
            assert dependency in compose, f"{name} depends on unknown {dependency}"
    assert "migrate" in compose["experiments"]["depends_on"]


def test_gateway_upstreams_point_at_compose_services_and_their_ports(
    compose: dict[str, Any],
) -> None:
    env = _env(compose["gateway"])
    for service in SERVICES:
        if not service.upstream:
            continue
        host, port = _host_of(env[service.gateway_url_env])
        assert host == service.name and host in compose
        assert port == _uvicorn_port(compose[service.name])


def test_the_console_is_a_client_of_the_compose_gateway(compose: dict[str, Any]) -> None:
    host, port = _host_of(_env(compose["console"])["CONSOLE_API_URL"])
    assert host == "gateway" and port == _uvicorn_port(compose["gateway"])
