"""The stack's fault-injection controls refuse to touch servers it did not start.

Their behaviour on servers it did start (PostgreSQL restarted under running services, the broker
stopped and started again) is what ``tests/faults`` exercises under load."""

from __future__ import annotations

from pathlib import Path

import pytest

from runyard.devstack import Stack
from runyard.devstack.stack import StackError


@pytest.fixture
def external(tmp_path: Path) -> Stack:
    return Stack(
        tmp_path,
        database_url="postgresql://postgres@127.0.0.1:5432/postgres",
        kafka_bootstrap="127.0.0.1:9",
        smtp_url="smtp://127.0.0.1:25",
    )


def test_postgres_given_by_database_url_is_never_restarted(external: Stack) -> None:
    with pytest.raises(StackError, match="DATABASE_URL"):
        external.restart_postgres()


def test_a_broker_given_by_kafka_bootstrap_servers_is_never_stopped_or_started(
    external: Stack,
) -> None:
    with pytest.raises(StackError, match="KAFKA_BOOTSTRAP_SERVERS"):
        external.stop_broker()
    with pytest.raises(StackError, match="KAFKA_BOOTSTRAP_SERVERS"):
        external.start_broker()
    assert not external.broker_running
