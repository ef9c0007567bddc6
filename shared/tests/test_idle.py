"""A resting service asks nothing of the broker or the database, and still reacts at once.

The relay waits on LISTEN with a slow fallback poll (and listens again at once when that
connection ends); an idle consumer pauses its partitions and wakes on the relays' NOTIFY, or on
its own check for records nobody announced; workers wait on ``runtime.work``, which every commit
of the process wakes. Each test gives the slow path (poll, check, idle wait) 300 s, far longer
than it waits for the effect, so only the wake-up under test can make it pass.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from fastapi import APIRouter
from pydantic_settings import SettingsConfigDict
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.shared.db import PgListener, asyncpg_dsn
from runyard.shared.events import CloudEvent, make_event
from runyard.shared.inbox import EventConsumer
from runyard.shared.outbox import PUBLISHED_CHANNEL, emit, published_payload
from runyard.shared.runtime import (
    Runtime,
    ServiceSpec,
    SessionDep,
    WorkSignal,
    create_service_app,
)
from runyard.shared.settings import ServiceSettings
from runyard.shared.testing import running_app
from shared.tests.pipeline import SCHEMA, PipelineDb

from .test_pipeline import (
    contract_for,
    fresh_topic,
    read_topic,
    record_effect,
    relay_for,
    scalar,
    until,
    write_events,
)

pytestmark = pytest.mark.pipeline

SLOW = 300.0


async def effects_of(db: PipelineDb, event_id: str) -> int:
    return int(
        await scalar(db, f"SELECT count(*) FROM {SCHEMA}.effects WHERE event_id = :e", e=event_id)
    )


def idle_consumer(
    db: PipelineDb,
    producer: AIOKafkaProducer,
    bootstrap: str,
    topic: str,
    *,
    idle_check_s: float = SLOW,
    wake: bool = True,
    also: tuple[str, ...] = (),
) -> EventConsumer:
    return EventConsumer(
        sessionmaker=db.sessionmaker,
        producer=producer,
        bootstrap_servers=[bootstrap],
        group_id=f"g-{uuid.uuid4().hex[:8]}",
        schema=SCHEMA,
        service="pipeline",
        handlers={t: record_effect for t in (topic, *also)},
        retry_backoff_s=0.01,
        idle_pause_after_s=0.5,
        idle_check_s=idle_check_s,
        wake_dsn=asyncpg_dsn(db.url) if wake else None,
    )


@pytest.fixture
async def tasks() -> AsyncIterator[list[asyncio.Task[Any]]]:
    running: list[asyncio.Task[Any]] = []
    yield running
    for task in running:
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)


# ---------------------------------------------------------------------------------- relay
def test_the_published_payload_names_each_topic_once_or_everything_when_too_long() -> None:
    assert published_payload(["b.x", "a.y", "b.x"]) == "a.y,b.x"
    assert published_payload([f"topic.{n:05d}" for n in range(2000)]) == "*"


async def test_the_relay_announces_the_topics_it_published_when_it_commits(
    pipeline_db: PipelineDb, producer: AIOKafkaProducer
) -> None:
    topic = fresh_topic()
    await write_events(pipeline_db, contract_for(topic), 2)
    heard: asyncio.Queue[str] = asyncio.Queue()
    conn = await asyncpg.connect(asyncpg_dsn(pipeline_db.url))
    try:
        await conn.add_listener(PUBLISHED_CHANNEL, lambda *args: heard.put_nowait(args[-1]))

        assert await relay_for(pipeline_db, producer).publish_batch() == 2

        assert await asyncio.wait_for(heard.get(), timeout=30) == topic
    finally:
        await conn.close()


async def test_the_relay_listens_again_at_once_when_its_listen_connection_ends(
    pipeline_db: PipelineDb,
    producer: AIOKafkaProducer,
    kafka_bootstrap: str,
    tasks: list[asyncio.Task[Any]],
) -> None:
    topic = fresh_topic()
    relay = relay_for(pipeline_db, producer, poll_interval_s=SLOW)
    tasks.append(asyncio.create_task(relay.run()))
    await until(lambda: _listening(relay.listener))
    assert relay.listener is not None

    await _terminate_listeners(pipeline_db)  # as a PostgreSQL restart would
    await until(lambda: _async(relay.listener is not None and relay.listener.connections >= 2))
    await relay.listener.listening.wait()
    (event,) = await write_events(pipeline_db, contract_for(topic), 1)

    records = await read_topic(kafka_bootstrap, topic, 1, timeout=30.0)
    assert [json.loads(r.value)["id"] for r in records] == [event.id]


# ------------------------------------------------------------------------------- consumer
async def test_an_idle_consumer_pauses_and_a_relays_notify_wakes_it(
    pipeline_db: PipelineDb,
    producer: AIOKafkaProducer,
    kafka_bootstrap: str,
    tasks: list[asyncio.Task[Any]],
) -> None:
    topic = fresh_topic()
    contract = contract_for(topic)
    consumer = idle_consumer(pipeline_db, producer, kafka_bootstrap, topic)
    relay = relay_for(pipeline_db, producer, poll_interval_s=SLOW)
    tasks += [asyncio.create_task(consumer.run()), asyncio.create_task(relay.run())]
    (first,) = await write_events(pipeline_db, contract, 1)  # the topic exists from here on
    await until(lambda: effects_of(pipeline_db, first.id))

    await until(lambda: _async(consumer.resting))  # every partition paused: no fetch at all
    (event,) = await write_events(pipeline_db, contract, 1)

    await until(lambda: effects_of(pipeline_db, event.id), timeout=60)
    assert await effects_of(pipeline_db, event.id) == 1


async def test_a_resting_consumer_ignores_topics_it_does_not_consume(
    pipeline_db: PipelineDb,
    producer: AIOKafkaProducer,
    kafka_bootstrap: str,
    tasks: list[asyncio.Task[Any]],
) -> None:
    topic = fresh_topic()
    contract = contract_for(topic)
    consumer = idle_consumer(pipeline_db, producer, kafka_bootstrap, topic)
    tasks.append(asyncio.create_task(consumer.run()))
    await producer.send_and_wait(topic, value=_record(contract), key=b"k")
    await until(lambda: _async(consumer.resting))

    conn = await asyncpg.connect(asyncpg_dsn(pipeline_db.url))
    try:
        await conn.execute("SELECT pg_notify($1, $2)", PUBLISHED_CHANNEL, "another.topic")
        await asyncio.sleep(0.5)
        assert consumer.resting
        await conn.execute("SELECT pg_notify($1, $2)", PUBLISHED_CHANNEL, f"another.topic,{topic}")
        await until(lambda: _async(not consumer.resting))
    finally:
        await conn.close()


async def test_a_busy_topic_keeps_only_its_own_partitions_fetched(
    pipeline_db: PipelineDb,
    producer: AIOKafkaProducer,
    kafka_bootstrap: str,
    tasks: list[asyncio.Task[Any]],
) -> None:
    """Partitions rest one by one: while records keep arriving on one topic, the consumer's
    other topic is paused (its fetches leave it out), and a NOTIFY naming it resumes it."""
    busy, quiet = fresh_topic(), fresh_topic()
    busy_contract, quiet_contract = contract_for(busy), contract_for(quiet)
    sent = await producer.send_and_wait(busy, value=_record(busy_contract), key=b"k")
    await producer.send_and_wait(quiet, value=_record(quiet_contract), key=b"k")
    consumer = idle_consumer(pipeline_db, producer, kafka_bootstrap, busy, also=(quiet,))
    tasks.append(asyncio.create_task(consumer.run()))

    async def keep_busy() -> None:
        while True:
            await producer.send_and_wait(busy, value=_record(busy_contract), key=b"k")
            await asyncio.sleep(0.1)

    def partitions(topic: str) -> set[Any]:
        assigned = consumer.consumer.assignment() if consumer.consumer else set()
        return {tp for tp in assigned if tp.topic == topic}

    def paused(topic: str) -> set[Any]:
        return partitions(topic) & (consumer.consumer.paused() if consumer.consumer else set())

    await until(lambda: _async(bool(partitions(busy)) and bool(partitions(quiet))))
    tasks.append(asyncio.create_task(keep_busy()))
    await until(lambda: _async(paused(quiet) == partitions(quiet)))
    busy_partition = next(tp for tp in partitions(busy) if tp.partition == sent.partition)
    await asyncio.sleep(1.5)  # three idle limits: the busy partition is fetched throughout
    assert busy_partition not in paused(busy)
    assert paused(quiet) == partitions(quiet)
    assert not consumer.resting

    event = make_event(quiet_contract(n=7), source="/elsewhere", subject="k")
    await producer.send_and_wait(quiet, value=event.to_json(), key=b"k")
    conn = await asyncpg.connect(asyncpg_dsn(pipeline_db.url))
    try:
        await conn.execute("SELECT pg_notify($1, $2)", PUBLISHED_CHANNEL, quiet)
    finally:
        await conn.close()
    await until(lambda: effects_of(pipeline_db, event.id), timeout=60)


async def test_a_resting_consumer_finds_records_that_nobody_announced(
    pipeline_db: PipelineDb,
    producer: AIOKafkaProducer,
    kafka_bootstrap: str,
    tasks: list[asyncio.Task[Any]],
) -> None:
    """A producer outside the database (another one, a tool) sends no NOTIFY: the idle check
    (one ListOffsets request) sees the partition's end move past the consumer's position."""
    topic = fresh_topic()
    contract = contract_for(topic)
    consumer = idle_consumer(pipeline_db, producer, kafka_bootstrap, topic, idle_check_s=1.0)
    consumer.wake_dsn = None
    tasks.append(asyncio.create_task(consumer.run()))
    await producer.send_and_wait(topic, value=_record(contract), key=b"k")
    await until(lambda: _async(consumer.resting))

    event = make_event(contract(n=7), source="/elsewhere", subject="k")
    await producer.send_and_wait(topic, value=event.to_json(), key=b"k")

    await until(lambda: effects_of(pipeline_db, event.id), timeout=60)


# ---------------------------------------------------------------------------- WorkSignal
async def test_work_signal_returns_at_once_for_a_commit_made_while_the_worker_looked() -> None:
    signal = WorkSignal()
    seen = signal.generation
    signal.notify()  # committed after the worker read the generation, before it waits

    assert await signal.wait(seen, idle_s=SLOW, min_wait=0) is True


async def test_work_signal_wakes_a_waiting_worker_and_times_out_without_a_commit() -> None:
    signal = WorkSignal()
    waiting = asyncio.create_task(signal.wait(signal.generation, idle_s=SLOW, min_wait=0))
    await asyncio.sleep(0)
    signal.notify()
    assert await asyncio.wait_for(waiting, timeout=30) is True

    assert await signal.wait(signal.generation, idle_s=0.05, min_wait=0) is False


# ------------------------------------------------------------------------------- runtime
class IdleSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="IDLETEST_", frozen=True)
    service_name = "pipeline"


async def test_a_service_at_rest_wakes_its_workers_and_its_consumer_on_commits(
    pipeline_db: PipelineDb, kafka_bootstrap: str
) -> None:
    """The runtime wires it all: a request's commit wakes the workers; the event it emitted
    reaches the resting consumer through the relay's NOTIFY, and its batch wakes them again."""
    topic = fresh_topic()
    contract = contract_for(topic)
    woken: list[int] = []
    router = APIRouter()

    @router.post("/things")
    async def create_thing(session: SessionDep) -> dict[str, str]:
        event = await emit(session, contract(n=1), subject="thing")
        return {"event_id": event.id}

    async def watcher(runtime: Runtime[Any, None]) -> None:
        while True:
            seen = runtime.work.generation
            await runtime.work.wait(seen, idle_s=SLOW)
            woken.append(runtime.work.generation)

    async def handle(session: AsyncSession, event: CloudEvent, payload: Any) -> None:
        await record_effect(session, event, payload)

    settings = IdleSettings(
        environment="test",
        database_url=pipeline_db.url,
        kafka_bootstrap_servers=kafka_bootstrap,
        outbox_poll_interval_s=SLOW,
        consumer_idle_pause_after_s=0.5,
        consumer_idle_check_s=SLOW,
    )
    spec: ServiceSpec[IdleSettings, None] = ServiceSpec(
        name=f"pipeline-{uuid.uuid4().hex[:6]}",
        schema=SCHEMA,
        settings=settings,
        routers=[router],
        handlers={topic: handle},
        workers={"watcher": watcher},
    )
    app = create_service_app(spec)
    async with running_app(app) as client:
        first = (await client.post("/things")).json()["event_id"]
        await until(lambda: effects_of(pipeline_db, first))
        await until(lambda: _async(len(woken) >= 2))  # the request's commit, the consumer's
        runtime = app.state.runtime
        await until(lambda: _async(runtime.consumer is not None and runtime.consumer.resting))
        before = len(woken)

        second = (await client.post("/things")).json()["event_id"]

        await until(lambda: effects_of(pipeline_db, second), timeout=60)
        await until(lambda: _async(len(woken) >= before + 2))


# -------------------------------------------------------------------------------- helpers
async def _async(value: Any) -> Any:
    return value


async def _listening(listener: PgListener | None) -> bool:
    return listener is not None and listener.listening.is_set()


async def _terminate_listeners(db: PipelineDb) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(db.url))
    try:
        ended = await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND query LIKE 'LISTEN %' "
            "AND pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()
    assert ended >= 1


def _record(contract: Any) -> bytes:
    return make_event(contract(n=0), source="/elsewhere", subject="k").to_json()
