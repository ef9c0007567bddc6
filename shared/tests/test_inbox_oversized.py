"""Records too big to handle, or too big to dead-letter whole, never stop the consumer."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from runyard.shared.events import make_event
from runyard.shared.inbox import DEFAULT_MAX_RECORD_BYTES, EventConsumer
from shared.tests.pipeline import SCHEMA, PipelineDb

from .test_pipeline import contract_for, fresh_topic, read_topic, record_effect, scalar, until

pytestmark = pytest.mark.pipeline


@pytest.fixture
async def small_request_producer(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    """A DLQ writer that refuses records over 64 KiB, as a real one refuses over its limit."""
    p = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", max_request_size=64 * 1024)
    await p.start()
    try:
        yield p
    finally:
        await p.stop()


def consumer(
    db: PipelineDb, producer: AIOKafkaProducer, bootstrap: str, topic: str, **options: Any
) -> EventConsumer:
    return EventConsumer(
        sessionmaker=db.sessionmaker,
        producer=producer,
        bootstrap_servers=[bootstrap],
        group_id=f"g-{uuid.uuid4().hex[:8]}",
        schema=SCHEMA,
        service="pipeline",
        handlers={topic: record_effect},
        retry_backoff_s=0.01,
        **options,
    )


async def count_rows(db: PipelineDb, table: str, event_id: str) -> int:
    return int(
        await scalar(db, f"SELECT count(*) FROM {SCHEMA}.{table} WHERE event_id = :e", e=event_id)
    )


def test_default_record_limit_is_apache_kafkas_default_message_size() -> None:
    assert DEFAULT_MAX_RECORD_BYTES == 1024 * 1024


def test_a_record_limit_below_one_byte_is_refused(pipeline_db: PipelineDb) -> None:
    with pytest.raises(ValueError, match="max_record_bytes"):
        consumer(pipeline_db, None, "unused:9092", "t", max_record_bytes=0)  # type: ignore[arg-type]


async def test_valid_event_over_the_record_limit_goes_to_dlq_unhandled_and_next_is_processed(
    pipeline_db: PipelineDb, producer: AIOKafkaProducer, kafka_bootstrap: str
) -> None:
    topic = fresh_topic()
    contract = contract_for(topic)
    big = make_event(contract(n=1, padding="x" * 4096), source="/runyard/pipeline", subject="agg")
    after = make_event(contract(n=2), source="/runyard/pipeline", subject="agg")
    await producer.send_and_wait(topic, value=big.to_json(), key=b"agg")
    await producer.send_and_wait(topic, value=after.to_json(), key=b"agg")

    running = consumer(pipeline_db, producer, kafka_bootstrap, topic, max_record_bytes=2048)
    task = asyncio.create_task(running.run())
    try:
        await until(lambda: handled(pipeline_db, after.id))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    assert await count_rows(pipeline_db, "effects", big.id) == 0
    assert await count_rows(pipeline_db, "inbox", big.id) == 0
    (dead,) = await read_topic(kafka_bootstrap, f"{topic}.dlq", 1)
    headers = dict(dead.headers)
    assert dead.value == big.to_json()
    assert headers["dlq-reason"] == b"oversized"
    assert headers["dlq-error-type"] == b"OversizedRecordError"
    assert f"{len(big.to_json())} bytes".encode() in headers["dlq-error"]


async def test_record_too_big_for_the_dlq_producer_is_dead_lettered_without_its_value(
    pipeline_db: PipelineDb,
    producer: AIOKafkaProducer,
    small_request_producer: AIOKafkaProducer,
    kafka_bootstrap: str,
) -> None:
    topic = fresh_topic()
    contract = contract_for(topic)
    huge = b"not json " * 20_000  # 180 KB: over the DLQ writer's 64 KiB request limit
    after = make_event(contract(n=2), source="/runyard/pipeline", subject="agg")
    await producer.send_and_wait(topic, value=huge, key=b"agg", headers=[("h", b"v")])
    await producer.send_and_wait(topic, value=after.to_json(), key=b"agg")

    running = consumer(pipeline_db, small_request_producer, kafka_bootstrap, topic)
    task = asyncio.create_task(running.run())
    try:
        await until(lambda: handled(pipeline_db, after.id))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    (dead,) = await read_topic(kafka_bootstrap, f"{topic}.dlq", 1)
    headers = dict(dead.headers)
    assert dead.value is None
    assert dead.key == b"agg"
    assert headers["dlq-reason"] == b"unparseable"
    assert headers["dlq-value-dropped"] == str(len(huge)).encode()
    assert "h" not in headers


async def handled(db: PipelineDb, event_id: str) -> bool:
    return await count_rows(db, "effects", event_id) == 1
