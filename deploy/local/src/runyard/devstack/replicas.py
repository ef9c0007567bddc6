"""Several processes of one service (``make up REPLICAS=webhooks=2``).

Replica 1 of a service is named after it (``webhooks``) and listens on the service's port;
replica ``i`` is ``<service>-<i>`` (``webhooks-2``) on ``port + 10 * (i - 1)`` (8114, 8124 ...)
unless a port is given for that name. Every replica gets the same settings, so the replicas of a
service join the same Kafka consumer group (the service's name) and share its topics' partitions,
and their workers share the database's work queues (``FOR UPDATE SKIP LOCKED``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from runyard.devstack.services import BY_NAME, SERVICES, ServiceDef

PORT_STEP = 10
MAX_REPLICAS = 9  # replica 10 would take the next decade's ports


@dataclass(frozen=True)
class Instance:
    service: ServiceDef
    index: int  # 1-based

    @property
    def name(self) -> str:
        return instance_name(self.service.name, self.index)


def instance_name(service: str, index: int) -> str:
    return service if index == 1 else f"{service}-{index}"


def replica_port(base: int, index: int) -> int:
    return base + PORT_STEP * (index - 1)


def parse_replicas(value: str | None) -> dict[str, int]:
    """``"webhooks=2,notifications=3"`` -> ``{"webhooks": 2, "notifications": 3}``."""
    counts: dict[str, int] = {}
    for item in (value or "").split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, count = item.partition("=")
        name = name.strip()
        if not sep or not count.strip().isdigit():
            raise ValueError(f"replicas are NAME=COUNT (webhooks=2), got {item!r}")
        counts[name] = int(count)
    check_replicas(counts)
    return counts


def replicas_from_env(environ: Mapping[str, str] = os.environ) -> dict[str, int]:
    return parse_replicas(environ.get("RUNYARD_REPLICAS"))


def check_replicas(counts: Mapping[str, int]) -> None:
    unknown = set(counts) - BY_NAME.keys()
    if unknown:
        raise ValueError(
            f"replicas for unknown service(s): {', '.join(sorted(unknown))}; "
            f"known: {', '.join(BY_NAME)}"
        )
    for name, count in counts.items():
        if not 1 <= count <= MAX_REPLICAS:
            raise ValueError(f"{name}: between 1 and {MAX_REPLICAS} replicas, got {count}")


def expand(services: Iterable[ServiceDef], counts: Mapping[str, int]) -> tuple[Instance, ...]:
    """Every process to run, in service order, replicas of a service next to each other."""
    return tuple(
        Instance(service, index)
        for service in services
        for index in range(1, counts.get(service.name, 1) + 1)
    )


def assign_ports(
    instances: Iterable[Instance], ports: Mapping[str, int], known: Iterable[str]
) -> dict[str, int]:
    """Every service's port and each replica's (``port + 10 * (i - 1)`` unless ``ports`` names
    it); refuses ports for unknown names and two processes on one port."""
    unknown = set(ports) - set(known)
    if unknown:
        raise ValueError(f"ports for unknown services: {', '.join(sorted(unknown))}")
    assigned: dict[str, int] = {s.name: s.port for s in SERVICES} | dict(ports)
    taken: dict[int, str] = {}
    for instance in instances:
        port = assigned.setdefault(
            instance.name, replica_port(assigned[instance.service.name], instance.index)
        )
        if port in taken:
            raise ValueError(f"{instance.name} and {taken[port]} would share port {port}")
        taken[port] = instance.name
    return assigned
