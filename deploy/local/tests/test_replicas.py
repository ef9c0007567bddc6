"""Several processes of one service: ``make up REPLICAS=webhooks=2`` and ``--partitions``."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from runyard.devstack import Stack
from runyard.devstack.cli import banner
from runyard.devstack.replicas import parse_replicas
from runyard.devstack.topics import catalog_topics
from runyard.shared.testing import free_port, start_tansu


def test_replicas_are_parsed_from_name_count_pairs() -> None:
    assert parse_replicas("webhooks=2, notifications=3,") == {"webhooks": 2, "notifications": 3}
    assert parse_replicas("") == {}


@pytest.mark.parametrize("bad", ["webhooks", "webhooks=two", "mailer=2", "webhooks=0"])
def test_a_malformed_or_unknown_replica_spec_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_replicas(bad)


def test_replicas_beyond_the_first_listen_ten_ports_further(tmp_path: Path) -> None:
    stack = Stack(tmp_path, replica_counts={"webhooks": 3, "gateway": 2})

    assert stack.instance_urls == {
        "auth": "http://127.0.0.1:8101",
        "experiments": "http://127.0.0.1:8102",
        "notifications": "http://127.0.0.1:8103",
        "webhooks": "http://127.0.0.1:8104",
        "webhooks-2": "http://127.0.0.1:8114",
        "webhooks-3": "http://127.0.0.1:8124",
        "gateway": "http://127.0.0.1:8000",
        "gateway-2": "http://127.0.0.1:8010",
        "console": "http://127.0.0.1:8105",
    }
    assert stack.service_urls["webhooks"] == "http://127.0.0.1:8104"


def test_the_gateway_is_given_the_first_replica_of_each_service(tmp_path: Path) -> None:
    stack = Stack(tmp_path, replica_counts={"webhooks": 2})
    stack.service_database_urls = {s.name: "postgresql+asyncpg://x" for s in stack.services}

    env = stack.service_env(stack.instances["gateway"].service)

    assert env["GATEWAY_WEBHOOKS_URL"] == "http://127.0.0.1:8104"


def test_a_replica_port_that_collides_with_another_process_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="share port 8114"):
        Stack(tmp_path, replica_counts={"webhooks": 2}, ports={"auth": 8114})


def test_the_environment_sets_replicas_and_partitions(tmp_path: Path) -> None:
    stack = Stack.from_env(
        tmp_path,
        environ={"RUNYARD_REPLICAS": "notifications=2", "RUNYARD_TOPIC_PARTITIONS": "6"},
    )

    assert list(stack.instances).count("notifications-2") == 1
    assert stack.topic_partitions == 6


@pytest.mark.slow
def test_up_refuses_a_bad_replicas_flag_before_starting_anything(tmp_path: Path) -> None:
    up = [sys.executable, "-m", "runyard.devstack", "up", "--data-dir", str(tmp_path)]
    result = subprocess.run(
        [*up, "--replicas", "webhooks=2,nope=1"],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    assert "unknown service(s): nope" in result.stderr
    assert not (tmp_path / "postgres").exists()


async def _group_members(bootstrap: str, group: str) -> tuple[str, list[str]]:
    """The group's state and member ids, as the broker tells them (Tansu leaves the members'
    assignments empty in DescribeGroups, so membership is what can be checked on it)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    [(_error, _group, state, _protocol_type, _protocol, members, *_rest)] = response.groups
    return state, [member[0] for member in members]


@pytest.fixture(scope="module")
def two_webhooks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with Stack.isolated(
        tmp_path_factory.mktemp("replicas"),
        services=["webhooks"],
        replica_counts={"webhooks": 2},
        topic_partitions=2,
    ) as running:
        yield running


@pytest.mark.e2e
def test_two_webhooks_replicas_run_on_their_own_ports_and_logs(two_webhooks: Stack) -> None:
    urls = two_webhooks.instance_urls

    assert set(urls) == {"webhooks", "webhooks-2"}
    assert urls["webhooks"] != urls["webhooks-2"]
    for url in urls.values():
        assert httpx.get(f"{url}/ready", trust_env=False).status_code == 200
    assert two_webhooks.pids["webhooks"] != two_webhooks.pids["webhooks-2"]
    assert "service.started" in two_webhooks.log_path("webhooks-2").read_text()
    assert "webhooks-2" in banner(two_webhooks)


@pytest.mark.e2e
def test_the_stack_creates_the_catalog_topics_with_the_partitions_asked_for(
    two_webhooks: Stack,
) -> None:
    counts = two_webhooks.topic_partition_counts

    assert set(counts) == set(catalog_topics())
    assert counts["experiment.completed"] == 2
    assert counts["experiment.completed.dlq"] == 2


@pytest.mark.e2e
def test_two_webhooks_replicas_join_one_consumer_group(two_webhooks: Stack) -> None:
    deadline = time.monotonic() + 60
    state, members = "", list[str]()
    while time.monotonic() < deadline:
        state, members = asyncio.run(_group_members(two_webhooks.kafka_bootstrap, "webhooks"))
        if state == "Stable" and len(members) == 2:
            break
        time.sleep(0.5)

    assert state == "Stable"
    assert len(set(members)) == 2


async def _partitions(bootstrap: str, topics: list[str]) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    return {d["topic"]: len(d["partitions"]) for d in described}


@pytest.fixture
def fresh_broker(tmp_path: Path) -> Iterator[str]:
    """A broker of its own: the topics must not exist before the command runs."""
    port = free_port()
    proc = start_tansu(port, tmp_path / "tansu.log")
    try:
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.slow
def test_the_topics_command_creates_topics_and_dlqs_with_the_given_partitions(
    fresh_broker: str,
) -> None:
    command = [sys.executable, "-m", "runyard.devstack", "topics", "--bootstrap", fresh_broker]
    result = subprocess.run(
        [*command, "--partitions", "3", "--min-insync-replicas", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    again = subprocess.run(
        [*command, "--partitions", "5"], capture_output=True, text=True, timeout=120
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"runyard: {len(catalog_topics())} topics created, 0 existed" in result.stdout
    partitions = asyncio.run(_partitions(fresh_broker, catalog_topics()))
    assert set(partitions.values()) == {3}
    assert partitions["experiment.completed.dlq"] == 3
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"runyard: 0 topics created, {len(catalog_topics())} existed" in again.stdout


def test_more_replicas_than_partitions_is_warned_about(
    fresh_broker: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = Stack(
        tmp_path,
        services=["webhooks"],
        replica_counts={"webhooks": 3},
        topic_partitions=2,
        kafka_bootstrap=fresh_broker,
        echo=True,
    )

    stack._ensure_topics()

    output = capsys.readouterr().out
    assert f"created {len(catalog_topics())} topics with 2 partitions" in output
    assert "3 replicas of webhooks but some topics have 2 partitions" in output
