"""The relay republishes what a broker lost: acknowledged offsets that go back mean a reset.

The pipeline tests run their own Tansu (memory only), stop it and start it again on the same
port: the broker comes back without topics or records, as docs/decisions/0004 describes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import text

from runyard.shared.outbox import OffsetsWentBack, OutboxRelay, offsets_after
from runyard.shared.testing import free_port, start_tansu
from shared.tests.pipeline import SCHEMA, PipelineDb

from .test_pipeline import contract_for, fresh_topic, read_topic, scalar, write_events


@dataclass(frozen=True)
class Ack:
    """What aiokafka's RecordMetadata carries that the relay reads."""

    topic: str
    partition: int
    offset: int


def test_offsets_that_only_grow_are_no_reset() -> None:
    reset, acked = offsets_after({("t", 0): 4}, [Ack("t", 0, 5), Ack("t", 1, 0), Ack("t", 0, 6)])

    assert reset is None
    assert acked == {("t", 0): 6, ("t", 1): 0}


def test_an_offset_at_or_below_one_acknowledged_before_is_a_reset_reported_once() -> None:
    before = {("t", 0): 41, ("t", 1): 17, ("u", 0): 3}

    reset, acked = offsets_after(before, [Ack("t", 1, 0), Ack("t", 1, 1)])
    again, _ = offsets_after(acked, [Ack("t", 0, 0), Ack("u", 0, 2)])

    assert reset == OffsetsWentBack("t", 1, 0, 17)
    assert acked == {("t", 1): 1}  # the other partitions' old offsets are forgotten
    assert again is None


def test_acks_without_offsets_are_ignored() -> None:
    reset, acked = offsets_after({("t", 0): 9}, [None, object(), Ack("t", 0, -1)])

    assert reset is None
    assert acked == {("t", 0): 9}


# ---------------------------------------------------------------- against a real broker
@dataclass
class Broker:
    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = start_tansu(self.port, self.log)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None

    def restart(self) -> None:
        """Everything the broker held is gone (memory storage)."""
        self.stop()
        self.start()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    own = Broker(free_port(), tmp_path / "tansu.log")
    own.start()
    try:
        yield own
    finally:
        own.stop()


@contextlib.asynccontextmanager
async def relay_on(
    pipeline_db: PipelineDb, broker: Broker, **options: Any
) -> AsyncIterator[OutboxRelay]:
    """A relay of the pipeline schema publishing to ``broker`` (its producer stopped after)."""
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    await producer.start()
    try:
        yield OutboxRelay(
            engine=pipeline_db.engine,
            producer=producer,
            schema=SCHEMA,
            service="pipeline",
            **options,
        )
    finally:
        await producer.stop()


async def publish_until_done(relay: OutboxRelay, timeout: float = 60.0) -> int:
    """Run the relay's batches until nothing is left, riding out the broker coming back."""
    published = 0
    async with asyncio.timeout(timeout):
        while True:
            try:
                count = await relay.publish_batch()
            except Exception:  # the producer reconnecting to the restarted broker
                await asyncio.sleep(0.2)
                continue
            if count == 0:
                return published
            published += count


def event_ids(records: list[object]) -> set[str]:
    return {json.loads(r.value)["id"] for r in records}  # type: ignore[attr-defined]


@pytest.mark.pipeline
@pytest.mark.slow
async def test_rows_published_before_a_broker_reset_are_published_again_after_it(
    pipeline_db: PipelineDb, broker: Broker
) -> None:
    topic = fresh_topic()
    contract = contract_for(topic)
    async with relay_on(pipeline_db, broker) as relay:
        before = await write_events(pipeline_db, contract, 3)
        assert await publish_until_done(relay) == 3
        assert len(await read_topic(broker.bootstrap, topic, 3)) == 3

        broker.restart()
        assert await read_topic(broker.bootstrap, topic, 1, timeout=3.0) == []  # all lost
        after = await write_events(pipeline_db, contract, 1)
        await publish_until_done(relay)

        records = await read_topic(broker.bootstrap, topic, 4)
    assert event_ids(records) == {e.id for e in [*before, *after]}
    assert await scalar(pipeline_db, f"SELECT count(*) FROM {SCHEMA}.outbox") == 4
    unpublished = f"SELECT count(*) FROM {SCHEMA}.outbox WHERE published_at IS NULL"
    assert await scalar(pipeline_db, unpublished) == 0


@pytest.mark.pipeline
@pytest.mark.slow
async def test_after_a_reset_the_window_is_published_again_once_the_broker_settled(
    pipeline_db: PipelineDb, broker: Broker
) -> None:
    """A broker that just came back may lose records again (Tansu did, creating its topics
    anew): the replay is repeated at each of ``replay_again_after_s`` after the reset."""
    topic = fresh_topic()
    contract = contract_for(topic)
    async with relay_on(pipeline_db, broker, replay_again_after_s=(0.3, 0.6)) as relay:
        await write_events(pipeline_db, contract, 3)
        assert await publish_until_done(relay) == 3
        assert await relay.replay_again_if_due() == 0  # no reset, nothing due

        broker.restart()
        await write_events(pipeline_db, contract, 1)
        # the new row's ack shows the reset: the window (all 4) is published again at once
        assert await publish_until_done(relay) == 5
        assert 0 < relay.next_replay_in(10.0) <= 0.3
        assert await relay.replay_again_if_due() == 0  # not yet
        await asyncio.sleep(0.35)
        assert await relay.replay_again_if_due() == 4  # 0.3 s after the reset
        assert await publish_until_done(relay) == 4
        await asyncio.sleep(0.3)
        assert await relay.replay_again_if_due() == 4  # 0.6 s after it
        assert await publish_until_done(relay) == 4
        assert await relay.replay_again_if_due() == 0  # both done
        assert relay.next_replay_in(10.0) == 10.0
        records = await read_topic(broker.bootstrap, topic, 13)
    assert len(records) == 13 and len(event_ids(records)) == 4  # consumers drop repeats
    attempts = f"SELECT count(*) FROM {SCHEMA}.outbox WHERE attempts = 4"
    assert await scalar(pipeline_db, attempts) == 4


@pytest.mark.pipeline
async def test_rows_published_before_the_replay_window_are_not_published_again(
    pipeline_db: PipelineDb, broker: Broker
) -> None:
    topic = fresh_topic()
    contract = contract_for(topic)
    async with relay_on(pipeline_db, broker, replay_window_s=600.0) as relay:
        old, recent = await write_events(pipeline_db, contract, 2)
        assert await publish_until_done(relay) == 2
        async with pipeline_db.engine.begin() as conn:
            await conn.execute(
                text(
                    f"UPDATE {SCHEMA}.outbox SET published_at = now() - interval '1 hour' "
                    "WHERE event_id = :e"
                ),
                {"e": old.id},
            )

        broker.restart()
        (last,) = await write_events(pipeline_db, contract, 1)
        await publish_until_done(relay)

        records = await read_topic(broker.bootstrap, topic, 2)
        late = await read_topic(broker.bootstrap, topic, 3, timeout=2.0)
    assert event_ids(records) == event_ids(late) == {recent.id, last.id}


@pytest.mark.pipeline
@pytest.mark.slow
async def test_with_replay_off_what_the_broker_lost_stays_lost(
    pipeline_db: PipelineDb, broker: Broker
) -> None:
    topic = fresh_topic()
    contract = contract_for(topic)
    async with relay_on(pipeline_db, broker, replay_window_s=0) as relay:
        await write_events(pipeline_db, contract, 3)
        assert await publish_until_done(relay) == 3

        broker.restart()
        (last,) = await write_events(pipeline_db, contract, 1)
        await publish_until_done(relay)

        records = await read_topic(broker.bootstrap, topic, 4, timeout=3.0)
    assert event_ids(records) == {last.id}
