"""The table of Runyard services the local stack runs (data, not code: add a row to add one)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class ServiceDef:
    name: str
    package: str  # ``runyard.<pkg>``; the ASGI factory is ``<package>.main:create_app``
    prefix: str  # settings env prefix, e.g. ``AUTH_``
    schema: str  # database schema; the service logs in as role ``runyard_<schema>``
    port: int  # default local port
    stage: int = 0  # services of a higher stage start once every lower stage is ready
    upstream: bool = True  # the gateway forwards to it (``GATEWAY_<NAME>_URL``)
    database: bool = True  # has a schema, a role and migrations (the console has none)

    @property
    def app(self) -> str:
        return f"{self.package}.main:create_app"

    @property
    def role(self) -> str:
        return f"runyard_{self.schema}"

    @property
    def gateway_url_env(self) -> str:
        return f"GATEWAY_{self.name.upper()}_URL"


SERVICES: tuple[ServiceDef, ...] = (
    ServiceDef("auth", "runyard.auth", "AUTH_", "auth", 8101),
    ServiceDef("experiments", "runyard.experiments", "EXPERIMENTS_", "experiments", 8102),
    ServiceDef("notifications", "runyard.notifications", "NOTIFICATIONS_", "notifications", 8103),
    ServiceDef("webhooks", "runyard.webhooks", "WEBHOOKS_", "webhooks", 8104),
    ServiceDef("gateway", "runyard.gateway", "GATEWAY_", "gateway", 8000, stage=1, upstream=False),
    # a client of the gateway (CONSOLE_API_URL): starts once the gateway is ready
    ServiceDef("console", "runyard.console", "CONSOLE_", "", 8105, stage=2, database=False),
)

BY_NAME = {s.name: s for s in SERVICES}


def select(names: Iterable[str] | None) -> tuple[ServiceDef, ...]:
    """The named services (all when ``names`` is None), in table order."""
    if names is None:
        return SERVICES
    wanted = {n.strip() for n in names if n.strip()}
    unknown = wanted - BY_NAME.keys()
    if unknown:
        raise ValueError(
            f"unknown service(s): {', '.join(sorted(unknown))}; known: {', '.join(BY_NAME)}"
        )
    return tuple(s for s in SERVICES if s.name in wanted)
