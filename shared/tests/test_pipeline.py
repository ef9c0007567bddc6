"""Outbox -> real broker -> inbox consumer, on real PostgreSQL and the Kafka-protocol broker."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.shared.events import CloudEvent, EventPayload, make_event
from runyard.shared.inbox import EventConsumer
from runyard.shared.outbox import OUTBOX_BACKLOG, OutboxRelay, add_event
from shared.tests.pipeline import SCHEMA, PipelineDb

pytestmark = pytest.mark.pipeline


def contract_for(topic: str) -> type[EventPayload]:
    class Tested(EventPayload):
        event_type = topic
        n: int

    return Tested


def fresh_topic() -> str:
    return f"pipeline.t{uuid.uuid4().hex[:12]}"


async def write_events(
    db: PipelineDb, contract: type[EventPayload], count: int
) -> list[CloudEvent]:
    events = [
        make_event(contract(n=i), source="/runyard/pipeline", subject=f"agg-{i}")
        for i in range(count)
    ]
    async with db.sessionmaker() as session, session.begin():
        for event in events:
            await add_event(session, event)
    return events


async def read_topic(bootstrap: str, topic: str, want: int, timeout: float = 20.0) -> list[Any]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    records: list[Any] = []
    try:
        async with asyncio.timeout(timeout):
            while len(records) < want:
                batch = await consumer.getmany(timeout_ms=500)
                for msgs in batch.values():
                    records.extend(msgs)
    except TimeoutError:
        pass
    finally:
        await consumer.stop()
    return records


async def record_effect(session: AsyncSession, event: CloudEvent, payload: Any) -> None:
    await session.execute(
        text(f"INSERT INTO {SCHEMA}.effects (event_id, note) VALUES (:e, :n)"),
        {"e": event.id, "n": f"n={payload.n}"},
    )


async def scalar(db: PipelineDb, sql: str, **params: Any) -> Any:
    async with db.engine.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar()


def relay_for(db: PipelineDb, producer: Any, **kw: Any) -> OutboxRelay:
    return OutboxRelay(engine=db.engine, producer=producer, schema=SCHEMA, service="pipeline", **kw)


def consumer_for(
    db: PipelineDb, producer: AIOKafkaProducer, bootstrap: str, handlers: dict[str, Any]
) -> EventConsumer:
    return EventConsumer(
        sessionmaker=db.sessionmaker,
        producer=producer,
        bootstrap_servers=[bootstrap],
        group_id=f"g-{uuid.uuid4().hex[:8]}",
        schema=SCHEMA,
        service="pipeline",
        handlers=handlers,
        max_attempts=3,
        retry_backoff_s=0.01,
    )


async def until(predicate: Any, timeout: float = 60.0) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.05)


async def test_relay_publishes_with_aggregate_key_and_marks_rows_published(
    pipeline_db: PipelineDb, producer: AIOKafkaProducer, kafka_bootstrap: str
) -> None:
    topic = fresh_topic()
    events = await write_events(pipeline_db, contract_for(topic), 3)
    relay = relay_for(pipeline_db, producer)
    assert (await relay.update_metrics())[0] == 3
    assert OUTBOX_BACKLOG.labels("pipeline")._value.get() == 3

    assert await relay.publish_batch() == 3
    records = await read_topic(kafka_bootstrap, topic, 3)
    assert sorted((r.key.decode(), json.loads(r.value)["id"]) for r in records) == sorted(
        (e.subject, e.id) for e in events
    )
    assert dict(records[0].headers)["content-type"] == b"application/cloudevents+json"
    assert (
        await scalar(
            pipeline_db, f"SELECT count(*) FROM {SCHEMA}.outbox WHERE published_at IS NULL"
        )
        == 0
    )
    assert (await relay.update_metrics())[0] == 0
    assert await relay.publish_batch() == 0


async def test_running_relay_wakes_on_notify_long_before_its_poll_interval(
    pipeline_db: PipelineDb, producer: AIOKafkaProducer, kafka_bootstrap: str
) -> None:
    topic = fresh_topic()
    relay = relay_for(pipeline_db, producer, poll_interval_s=300.0)
    task = asyncio.create_task(relay.run())
    try:
        await asyncio.sleep(0.5)  # the relay is now idle, waiting on LISTEN or a 300 s poll
        (event,) = await write_events(pipeline_db, contract_for(topic), 1)
        records = await read_topic(kafka_bootstrap, topic, 1, timeout=30.0)
        assert [json.loads(r.value)["id"] for r in records] == [event.id]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


class CrashAfterPublish:
    """A producer that really publishes, then 'dies' before the relay can mark the rows."""

    def __init__(self, real: AIOKafkaProducer) -> None:
        self.real = real

    async def send(self, topic: str, **kw: Any) -> Any:
        await self.real.send_and_wait(topic, **kw)
        failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        failed.set_exception(ConnectionResetError("relay killed after publish"))
        return failed


async def test_relay_killed_between_publish_and_mark_republishes_and_effect_happens_once(
    pipeline_db: PipelineDb, producer: AIOKafkaProducer, kafka_bootstrap: str
) -> None:
    topic = fresh_topic()
    (event,) = await write_events(pipeline_db, contract_for(topic), 1)

    with pytest.raises(ConnectionResetError):
        await relay_for(pipeline_db, CrashAfterPublish(producer)).publish_batch()
    assert (
        await scalar(
            pipeline_db, f"SELECT count(*) FROM {SCHEMA}.outbox WHERE published_at IS NULL"
        )
        == 1
    )

    assert await relay_for(pipeline_db, producer).publish_batch() == 1  # the restarted relay
    copies = await read_topic(kafka_bootstrap, topic, 2)
    assert [json.loads(r.value)["id"] for r in copies] == [event.id, event.id]

    consumer = consumer_for(pipeline_db, producer, kafka_bootstrap, {topic: record_effect})
    for record in copies:
        await consumer.process(record)
    assert (
        await scalar(
            pipeline_db, f"SELECT count(*) FROM {SCHEMA}.effects WHERE event_id = :e", e=event.id
        )
        == 1
    )
    assert (
        await scalar(
            pipeline_db, f"SELECT count(*) FROM {SCHEMA}.inbox WHERE event_id = :e", e=event.id
        )
        == 1
    )


async def test_malformed_record_goes_to_dlq_and_the_next_record_is_processed(
    pipeline_db: PipelineDb, producer: AIOKafkaProducer, kafka_bootstrap: str
) -> None:
    topic = fresh_topic()
    contract = contract_for(topic)
    await producer.send_and_wait(topic, value=b'{"not": "a cloudevent"', key=b"bad")
    good = make_event(contract(n=7), source="/runyard/pipeline", subject="agg-good")
    await producer.send_and_wait(topic, value=good.to_json(), key=b"agg-good")

    consumer = consumer_for(pipeline_db, producer, kafka_bootstrap, {topic: record_effect})
    task = asyncio.create_task(consumer.run())
    try:
        await until(
            lambda: scalar(
                pipeline_db,
                f"SELECT count(*) = 1 FROM {SCHEMA}.effects WHERE event_id = :e",
                e=good.id,
            )
        )
        # read while the consumer runs: the two records may sit on different partitions, and the
        # dead letter can still be on its way (retrying a dropped broker connection) when the
        # good record's effect is already there
        (dead,) = await read_topic(kafka_bootstrap, f"{topic}.dlq", 1)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    headers = dict(dead.headers)
    assert dead.value == b'{"not": "a cloudevent"'
    assert headers["dlq-reason"] == b"unparseable"
    assert headers["dlq-original-topic"] == topic.encode()
    assert b"CloudEvents" in headers["dlq-error"]


async def test_handler_failing_every_attempt_goes_to_dlq_without_effect_and_consumer_moves_on(
    pipeline_db: PipelineDb, producer: AIOKafkaProducer, kafka_bootstrap: str
) -> None:
    topic = fresh_topic()
    contract = contract_for(topic)
    calls: list[int] = []

    async def fails_on_one(session: AsyncSession, event: CloudEvent, payload: Any) -> None:
        await record_effect(session, event, payload)
        if payload.n == 1:
            calls.append(payload.n)
            raise RuntimeError("cannot handle n=1")

    poison = make_event(contract(n=1), source="/runyard/pipeline", subject="agg")
    after = make_event(contract(n=2), source="/runyard/pipeline", subject="agg")
    consumer = consumer_for(pipeline_db, producer, kafka_bootstrap, {topic: fails_on_one})
    await producer.send_and_wait(topic, value=poison.to_json(), key=b"agg")
    await producer.send_and_wait(topic, value=after.to_json(), key=b"agg")
    for record in await read_topic(kafka_bootstrap, topic, 2):
        await consumer.process(record)

    assert calls == [1, 1, 1]
    assert (
        await scalar(
            pipeline_db, f"SELECT count(*) FROM {SCHEMA}.effects WHERE event_id = :e", e=poison.id
        )
        == 0
    )
    assert (
        await scalar(
            pipeline_db, f"SELECT count(*) FROM {SCHEMA}.inbox WHERE event_id = :e", e=poison.id
        )
        == 0
    )
    assert (
        await scalar(
            pipeline_db, f"SELECT count(*) FROM {SCHEMA}.effects WHERE event_id = :e", e=after.id
        )
        == 1
    )
    (dead,) = await read_topic(kafka_bootstrap, f"{topic}.dlq", 1)
    assert dict(dead.headers)["dlq-reason"] == b"handler_failed"
    assert b"cannot handle n=1" in dict(dead.headers)["dlq-error"]


@pytest.mark.slow
async def test_consumer_commits_offsets_so_a_restarted_group_does_not_reprocess(
    pipeline_db: PipelineDb, producer: AIOKafkaProducer, kafka_bootstrap: str
) -> None:
    topic = fresh_topic()
    contract = contract_for(topic)
    seen: list[str] = []

    async def remember(session: AsyncSession, event: CloudEvent, payload: Any) -> None:
        seen.append(event.id)

    first = make_event(contract(n=1), source="/x", subject="a")
    await producer.send_and_wait(topic, value=first.to_json(), key=b"a")
    consumer = consumer_for(pipeline_db, producer, kafka_bootstrap, {topic: remember})

    async def run_until(count: int) -> None:
        task = asyncio.create_task(consumer.run())
        try:
            await until(lambda: asyncio.sleep(0, len(seen) >= count))
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    await run_until(1)
    second = make_event(contract(n=2), source="/x", subject="a")
    await producer.send_and_wait(topic, value=second.to_json(), key=b"a")
    await run_until(2)
    assert seen == [first.id, second.id]


async def test_prune_deletes_only_old_published_rows(
    pipeline_db: PipelineDb, producer: AIOKafkaProducer
) -> None:
    topic = fresh_topic()
    await write_events(pipeline_db, contract_for(topic), 3)
    async with pipeline_db.engine.begin() as conn:
        await conn.execute(
            text(
                f"UPDATE {SCHEMA}.outbox SET published_at = now() - interval '2 days' "
                f"WHERE id = (SELECT min(id) FROM {SCHEMA}.outbox)"
            )
        )
        await conn.execute(
            text(
                f"UPDATE {SCHEMA}.outbox SET published_at = now() "
                f"WHERE id = (SELECT max(id) FROM {SCHEMA}.outbox)"
            )
        )
    assert await relay_for(pipeline_db, producer, retention_hours=24).prune() == 1
    assert await scalar(pipeline_db, f"SELECT count(*) FROM {SCHEMA}.outbox") == 2
