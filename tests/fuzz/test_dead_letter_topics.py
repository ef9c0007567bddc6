"""Bad records on every consumed topic end in ``<topic>.dlq`` and change nothing.

For each topic a running service consumes (as its ``/asyncapi.json`` declares: the ``receive``
operations come from the same ``handlers`` its consumer subscribes with), a plain aiokafka
producer sends, all under one key so they share a partition and keep their order:

- ``malformed``: not JSON at all;
- ``oversized``: a valid event of the topic, padded past the consumer's record limit
  (``runyard.shared.inbox.DEFAULT_MAX_RECORD_BYTES``) — handled, it would change state;
- ``wrong_version``: a valid event whose ``dataschema`` names a version no contract has;
- ``missing_field``: the event with an empty ``data`` (only for contracts with required fields);

then, after every dead letter has arrived and the tables were counted again, a valid event (the
documented example of the topic, with a fresh id) under the same key: the consumer must still
handle it (inbox row), so no bad record stopped it.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import random
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path
from types import ModuleType
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from runyard.devstack import Stack
from runyard.shared.contracts import all_contracts
from runyard.shared.events import CloudEvent, schema_urn
from runyard.shared.inbox import DEFAULT_MAX_RECORD_BYTES

pytestmark = pytest.mark.fuzz

#: service name = its consumer group = its Postgres schema
CONSUMING_SERVICES = ("auth", "experiments", "notifications", "webhooks")
EXPECTED_REASON = {
    "malformed": b"unparseable",
    "oversized": b"oversized",
    "wrong_version": b"unparseable",
    "missing_field": b"unparseable",
}
DLQ_HEADERS = (
    "dlq-reason",
    "dlq-error",
    "dlq-error-type",
    "dlq-original-topic",
    "dlq-original-partition",
    "dlq-original-offset",
    "dlq-consumer-group",
)
TIMEOUT_S = 90.0


def load_examples() -> ModuleType:
    """``docs/gen_events.py``: the documented example event of every type."""
    path = Path(__file__).resolve().parents[2] / "docs" / "gen_events.py"
    spec = importlib.util.spec_from_file_location("runyard_fuzz_gen_events", path)
    assert spec is not None and spec.loader is not None
    module = sys.modules.get(spec.name) or importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def bad_records(event_type: str, example: CloudEvent) -> dict[str, bytes]:
    def variant(**update: Any) -> bytes:
        return example.model_copy(update={"id": str(uuid.uuid4()), **update}).to_json()

    versions = [v for (t, v) in all_contracts() if t == event_type]
    padding = "x" * (DEFAULT_MAX_RECORD_BYTES + 1)
    records = {
        "malformed": b"\x00{this is not json",
        "oversized": variant(data={**example.data, "padding": padding}),
        "wrong_version": variant(dataschema=schema_urn(event_type, max(versions) + 1)),
    }
    model = all_contracts()[(event_type, max(versions))]
    if any(f.is_required() for f in model.model_fields.values()):
        records["missing_field"] = variant(data={})
    return records


@dataclass
class Outcome:
    topics: dict[str, list[str]]  # consuming service -> topics
    sent: dict[tuple[str, str], bytes] = field(default_factory=dict)  # (topic, kind) -> key
    digests: dict[tuple[str, str], str] = field(default_factory=dict)  # (topic, kind) -> sha256
    #: (topic, kind, consumer group) -> sha256 of the dead letter's value
    dead_digests: dict[tuple[str, str, str], str] = field(default_factory=dict)
    #: (topic, kind, consumer group) -> headers of its dead letter
    dead_letters: dict[tuple[str, str, str], dict[str, bytes]] = field(default_factory=dict)
    before: dict[str, dict[str, int]] = field(default_factory=dict)
    after: dict[str, dict[str, int]] = field(default_factory=dict)
    canaries: dict[str, str] = field(default_factory=dict)  # topic -> event id
    handled: dict[str, set[str]] = field(default_factory=dict)  # service -> topics handled

    def expected_letters(self, service: str) -> set[tuple[str, str, str]]:
        return {
            (topic, kind, service) for (topic, kind) in self.sent if topic in self.topics[service]
        }


def consumed_topics(stack: Stack) -> dict[str, list[str]]:
    found = {}
    for service in CONSUMING_SERVICES:
        document = httpx.get(f"{stack.service_urls[service]}/asyncapi.json", timeout=10).json()
        found[service] = sorted(
            channel["address"]
            for key, channel in document["channels"].items()
            if f"receive_{key}" in document["operations"]
        )
    return found


async def row_counts(conn: asyncpg.Connection, schema: str) -> dict[str, int]:
    tables = await conn.fetch(
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = $1 AND table_type = 'BASE TABLE' ORDER BY table_name",
        schema,
    )
    return {
        t["table_name"]: await conn.fetchval(f'SELECT count(*) FROM "{schema}"."{t["table_name"]}"')
        for t in tables
    }


async def quiet_counts(conn: asyncpg.Connection) -> dict[str, dict[str, int]]:
    """Row counts once events still in flight (from the stack's start or earlier tests) are
    handled: the same counts three times in a row, a second apart."""
    previous: dict[str, dict[str, int]] = {}
    same = 0
    deadline = time.monotonic() + TIMEOUT_S
    while same < 2:
        assert time.monotonic() < deadline, "the stack never went quiet"
        await asyncio.sleep(1.0)
        counts = {s: await row_counts(conn, s) for s in CONSUMING_SERVICES}
        same = same + 1 if counts == previous else 0
        previous = counts
    return previous


async def collect_dead_letters(bootstrap: str, outcome: Outcome) -> None:
    keys = {key: (topic, kind) for (topic, kind), key in outcome.sent.items()}
    wanted = set().union(*(outcome.expected_letters(s) for s in CONSUMING_SERVICES))
    reader = AIOKafkaConsumer(
        *sorted({f"{topic}.dlq" for topic, _kind in outcome.sent}),
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await reader.start()
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not wanted <= set(outcome.dead_letters) and time.monotonic() < deadline:
            batches = await reader.getmany(timeout_ms=500)
            for record in (r for records in batches.values() for r in records):
                if record.key not in keys:
                    continue
                topic, kind = keys[record.key]
                headers = dict(record.headers)
                group = headers.get("dlq-consumer-group", b"?").decode()
                outcome.dead_letters[(topic, kind, group)] = headers
                outcome.dead_digests[(topic, kind, group)] = sha256(record.value or b"").hexdigest()
    finally:
        await reader.stop()


async def run_bad_records(stack: Stack) -> Outcome:
    examples = load_examples()
    outcome = Outcome(topics=consumed_topics(stack))
    all_topics = sorted({t for topics in outcome.topics.values() for t in topics})
    conn = await asyncpg.connect(stack.admin_dsn)
    producer = AIOKafkaProducer(
        bootstrap_servers=stack.kafka_bootstrap,
        acks="all",
        max_request_size=4 * DEFAULT_MAX_RECORD_BYTES,
        compression_type="gzip",
    )
    await producer.start()
    try:
        outcome.before = await quiet_counts(conn)
        # one partition per topic for its bad records and, after them, its valid one
        partition = {t: random.choice(sorted(await producer.partitions_for(t))) for t in all_topics}
        for topic in all_topics:
            for kind, value in bad_records(topic, examples.example_event(topic)).items():
                key = f"fuzz-{kind}-{uuid.uuid4()}".encode()
                outcome.sent[(topic, kind)] = key
                outcome.digests[(topic, kind)] = sha256(value).hexdigest()
                await producer.send(topic, value, key=key, partition=partition[topic])
        await producer.flush()
        await collect_dead_letters(stack.kafka_bootstrap, outcome)
        outcome.after = {s: await row_counts(conn, s) for s in CONSUMING_SERVICES}

        for topic in all_topics:
            canary = examples.example_event(topic).model_copy(update={"id": str(uuid.uuid4())})
            outcome.canaries[topic] = canary.id
            await producer.send(
                topic, canary.to_json(), key=canary.subject.encode(), partition=partition[topic]
            )
        await producer.flush()
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            for service, topics in outcome.topics.items():
                rows = await conn.fetch(
                    f'SELECT topic FROM "{service}".inbox '
                    "WHERE consumer = $1 AND event_id = ANY($2::text[])",
                    service,
                    [outcome.canaries[t] for t in topics],
                )
                outcome.handled[service] = {r["topic"] for r in rows}
            if all(outcome.handled[s] == set(outcome.topics[s]) for s in outcome.topics):
                break
            await asyncio.sleep(0.5)
    finally:
        await producer.stop()
        await conn.close()
    return outcome


@pytest.fixture(scope="module")
def outcome(stack: Stack) -> Iterator[Outcome]:
    yield asyncio.run(run_bad_records(stack))


def test_every_consuming_service_declares_the_topics_its_consumer_subscribes(
    outcome: Outcome,
) -> None:
    assert outcome.topics["auth"] == ["api_key.used"]
    assert "user.registered" in outcome.topics["experiments"]
    assert "experiment.completed" in outcome.topics["notifications"]
    assert "experiment.completed" in outcome.topics["webhooks"]
    assert all(outcome.topics.values())


@pytest.mark.parametrize("service", CONSUMING_SERVICES)
def test_malformed_oversized_and_wrong_version_records_end_in_the_dlq_of_their_topic(
    outcome: Outcome, service: str
) -> None:
    expected = outcome.expected_letters(service)
    kinds = Counter(kind for _topic, kind, _group in expected)
    assert kinds["malformed"] == kinds["oversized"] == kinds["wrong_version"] > 0
    missing = sorted(expected - set(outcome.dead_letters))
    assert missing == [], f"no dead letter from {service} for {missing}"
    for topic, kind, group in sorted(expected):
        headers = outcome.dead_letters[(topic, kind, group)]
        assert set(DLQ_HEADERS) <= set(headers), (topic, kind, sorted(headers))
        assert headers["dlq-reason"] == EXPECTED_REASON[kind], (topic, kind, headers)
        assert headers["dlq-original-topic"] == topic.encode()
        assert headers["dlq-error"]
        assert outcome.dead_digests[(topic, kind, group)] == outcome.digests[(topic, kind)]
    unexpected = {
        letter for letter in outcome.dead_letters if letter[2] == service and letter not in expected
    }
    assert unexpected == set()


@pytest.mark.parametrize("service", CONSUMING_SERVICES)
def test_bad_records_change_no_table_of_the_consuming_service(
    outcome: Outcome, service: str
) -> None:
    assert outcome.after[service] == outcome.before[service]
    assert "inbox" in outcome.before[service]


@pytest.mark.parametrize("service", CONSUMING_SERVICES)
def test_consumer_still_handles_a_valid_event_sent_after_the_bad_records(
    outcome: Outcome, service: str
) -> None:
    not_handled = sorted(set(outcome.topics[service]) - outcome.handled.get(service, set()))
    assert not_handled == [], json.dumps({t: outcome.canaries[t] for t in not_handled}, indent=1)
