"""Fault injection on the real stack (the load is in ``load``, the scenarios and the per-event
checks in ``harness``).

One stack serves the whole package: embedded PostgreSQL, Tansu, the SMTP sink, the five services
and a second webhooks replica, supervised as ``make up`` supervises them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from runyard.devstack import Stack

from .load import FAULT_ENV, USERS, LoadUser, Receiver, register_users, serve_receiver

#: a consumer with two replicas: one of them is killed on its own
REPLICAS = {"webhooks": 2}


@pytest.fixture(scope="package")
def receiver() -> Iterator[Receiver]:
    with serve_receiver() as box:
        yield box


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with Stack.isolated(
        tmp_path_factory.mktemp("faults-stack"), extra_env=FAULT_ENV, replica_counts=REPLICAS
    ) as running:
        yield running


@pytest.fixture(scope="package")
def load_users(stack: Stack, receiver: Receiver) -> list[LoadUser]:
    return asyncio.run(register_users(stack, receiver, USERS))
