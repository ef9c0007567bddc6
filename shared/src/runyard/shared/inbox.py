"""Idempotent consumers: inbox table + a Kafka consumer loop with DLQ.

For each record: parse the CloudEvent and its contract; in ONE transaction insert
(consumer, event id) into the inbox and run the handler (a partition's batch of records shares one
transaction and one inbox statement) — an already-seen id means the effect is
already stored, so the handler is skipped. Offsets are committed only after that transaction
commits. A record that cannot be parsed, has an unknown contract, is bigger than
``max_record_bytes``, or whose handler fails ``max_attempts`` times is published to
``<topic>.dlq`` with the error in headers, then its offset is committed and the consumer moves on.
A dead letter too big for the producer is published without its value (header
``dlq-value-dropped``), so that no record can stop the consumer.

At rest the consumer can stop asking the broker for records (``idle_pause_after_s``): a partition
that has had no record for that long is paused, so the consumer's fetches leave it out and, once
every partition is paused, no fetch request is sent at all. Paused partitions are resumed when a
relay sharing its database notifies ``runyard_published`` naming their topic (every partition when
it names everything), when that LISTEN connection starts (again), when they are assigned, or when
a check every ``idle_check_s`` finds their end offset past the consumer's position (records a
producer wrote without notifying). Pausing partition by partition matters because a broker's work
per fetch grows with the partitions it names: a service consuming thirty topics, one of them busy,
fetches that one topic's partitions, not all of them, ten times a second. Pausing changes when
records are fetched, never which: offsets, the inbox and the DLQ work as above.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka.errors import MessageSizeTooLargeError
from prometheus_client import Counter
from sqlalchemy import Column, DateTime, MetaData, PrimaryKeyConstraint, Table, Text, func, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from runyard.shared.db import PgListener, database_unavailable
from runyard.shared.events import CloudEvent, EventPayload, parse_event
from runyard.shared.logging import bound, get_logger
from runyard.shared.outbox import PUBLISHED_CHANNEL, check_identifier

log = get_logger(__name__)

CONSUMED = Counter("runyard_events_consumed", "Events handled", ["service", "topic", "outcome"])

Handler = Callable[[AsyncSession, CloudEvent, Any], Awaitable[None]]

#: Apache Kafka's default ``message.max.bytes`` is about this (1048588): no Runyard producer
#: publishes an event this big, so a bigger record value is refused unread.
DEFAULT_MAX_RECORD_BYTES = 1024 * 1024


class OversizedRecordError(ValueError):
    """A record value bigger than the consumer accepts; it goes to the DLQ unparsed."""


def inbox_table(metadata: MetaData) -> Table:
    return Table(
        "inbox",
        metadata,
        Column("consumer", Text, nullable=False),
        Column("event_id", Text, nullable=False),
        Column("topic", Text, nullable=False),
        Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        PrimaryKeyConstraint("consumer", "event_id", name="pk_inbox"),
    )


class _WakeOnAssignment(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, consumer: EventConsumer) -> None:
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked: Any) -> None:
        pass

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.consumer.wake(partitions=assigned)


class EventConsumer:
    """One consumer group over a set of topics, one handler per topic."""

    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        producer: AIOKafkaProducer,
        bootstrap_servers: list[str],
        group_id: str,
        schema: str,
        service: str,
        handlers: dict[str, Handler],
        max_attempts: int = 3,
        retry_backoff_s: float = 0.2,
        max_records: int = 200,
        client_options: dict[str, Any] | None = None,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        fetch_max_wait_ms: int = 100,
        idle_pause_after_s: float = 0.0,
        idle_check_s: float = 10.0,
        wake_dsn: str | None = None,
        on_commit: Callable[[], None] | None = None,
        metadata_max_age_ms: int = 30_000,
    ) -> None:
        #: extra aiokafka options (security, client_id); bootstrap_servers wins over theirs
        self.client_options = {
            k: v for k, v in (client_options or {}).items() if k != "bootstrap_servers"
        }
        self.sessionmaker = sessionmaker
        self.producer = producer
        self.bootstrap_servers = bootstrap_servers
        self.group_id = group_id
        self.service = service
        self.handlers = handlers
        self.max_attempts = max_attempts
        self.retry_backoff_s = retry_backoff_s
        self.max_records = max_records
        if max_record_bytes < 1:
            raise ValueError(f"max_record_bytes must be positive, got {max_record_bytes}")
        self.max_record_bytes = max_record_bytes
        #: how long the broker may hold a fetch that finds nothing (Tansu answers a fetch at
        #: about this time even when records arrive meanwhile: it is a latency, not a long poll)
        self.fetch_max_wait_ms = fetch_max_wait_ms
        #: pause every partition after this long without a record (0: never pause)
        self.idle_pause_after_s = idle_pause_after_s
        #: while paused, ask the broker this often whether a partition has records after all
        self.idle_check_s = idle_check_s
        #: database to LISTEN on for ``runyard_published`` (None: the idle check only)
        self.wake_dsn = wake_dsn
        #: called after each partition batch (its transactions committed): wakes local workers
        self.on_commit = on_commit
        #: how often the consumer refreshes the cluster's metadata (topics, partitions, leaders)
        #: unasked; a lost connection or an unknown leader refreshes it at once anyway
        self.metadata_max_age_ms = metadata_max_age_ms
        self.listener: PgListener | None = None
        self._topics = frozenset(handlers)
        self._woken = asyncio.Event()
        #: per partition: when it last returned a record or was resumed or assigned
        self._last_record: dict[TopicPartition, float] = {}
        self._started = self._last_check = time.monotonic()
        s = check_identifier(schema)
        self._mark = text(
            f"INSERT INTO {s}.inbox (consumer, event_id, topic) "
            "VALUES (:consumer, :event_id, :topic) "
            "ON CONFLICT DO NOTHING RETURNING event_id"
        )
        # a partition batch's inbox rows in one statement: the ids that come back are the new
        # ones (an id twice in one batch is inserted once, so its second record is a duplicate)
        self._mark_all = text(
            f"INSERT INTO {s}.inbox (consumer, event_id, topic) "
            "SELECT :consumer, u.event_id, u.topic "
            "FROM unnest(CAST(:event_ids AS text[]), CAST(:topics AS text[])) "
            "AS u(event_id, topic) "
            "ON CONFLICT DO NOTHING RETURNING event_id"
        )
        self.consumer: AIOKafkaConsumer | None = None

    async def run(self) -> None:
        self.consumer = AIOKafkaConsumer(
            **self.client_options,
            bootstrap_servers=self.bootstrap_servers,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            metadata_max_age_ms=self.metadata_max_age_ms,
            fetch_max_wait_ms=self.fetch_max_wait_ms,
            # aiokafka's fetch routine wakes this often even with nothing to fetch (default
            # 200 ms); rebalances, resumes and fetch answers wake it anyway
            consumer_timeout_ms=2000,
        )
        self.consumer.subscribe(topics=sorted(self.handlers), listener=_WakeOnAssignment(self))
        await self.consumer.start()
        log.info("consumer.started", group=self.group_id, topics=sorted(self.handlers))
        listening: asyncio.Task[None] | None = None
        if self.idle_pause_after_s > 0 and self.wake_dsn:
            self.listener = PgListener(
                self.wake_dsn, PUBLISHED_CHANNEL, on_notify=self._published, on_connect=self.wake
            )
            listening = asyncio.create_task(self.listener.run())
        self._started = self._last_check = time.monotonic()
        try:
            while True:
                batches = await self.consumer.getmany(timeout_ms=1000, max_records=self.max_records)
                for tp, records in batches.items():
                    try:
                        await self.process_batch(records)
                    finally:
                        if self.on_commit is not None:
                            self.on_commit()
                    await self.consumer.commit({tp: records[-1].offset + 1})
                    self._last_record[tp] = time.monotonic()
                if self.idle_pause_after_s > 0:
                    await self._rest()
        finally:
            if listening is not None:
                listening.cancel()
                await asyncio.gather(listening, return_exceptions=True)
            await self.consumer.stop()

    @property
    def resting(self) -> bool:
        """Every assigned partition is paused: no fetch request goes to the broker."""
        if self.consumer is None:
            return False
        assigned = self.consumer.assignment()
        return bool(assigned) and not (assigned - self.consumer.paused())

    def wake(self, topics: frozenset[str] | None = None, partitions: Any | None = None) -> None:
        """Fetch again now from the paused partitions of ``topics`` (records were published
        there), of ``partitions`` (just assigned), or from all (``None`` for both: the LISTEN
        (re)started); each pauses again once idle for ``idle_pause_after_s``."""
        if self.consumer is None:
            return
        now = time.monotonic()
        if partitions is not None:
            chosen = set(partitions)
        elif topics is not None:
            chosen = {tp for tp in self.consumer.assignment() if tp.topic in topics}
        else:
            chosen = set(self.consumer.assignment())
        for tp in chosen:
            self._last_record[tp] = now
        paused = chosen & self.consumer.paused()
        if paused:
            self.consumer.resume(*paused)
        self._woken.set()

    def _published(self, payload: str) -> None:
        if payload == "*":
            self.wake()
            return
        named = self._topics.intersection(payload.split(","))
        if named:
            self.wake(topics=frozenset(named))

    def _pause_idle(self, now: float) -> None:
        """Pause each fetched partition that has had no record for ``idle_pause_after_s``."""
        assert self.consumer is not None
        idle = [
            tp
            for tp in self.consumer.assignment() - self.consumer.paused()
            if now - self._last_record.get(tp, self._started) >= self.idle_pause_after_s
        ]
        if idle:
            self.consumer.pause(*idle)

    async def _rest(self) -> None:
        """After each ``getmany``: pause the partitions idle long enough. While some are still
        fetched, look for unannounced records in the paused ones every ``idle_check_s``; once
        all are paused, wait for a wake-up or that check, whichever comes first."""
        assert self.consumer is not None
        now = time.monotonic()
        self._pause_idle(now)
        if not self.resting:
            if self.consumer.paused() and now - self._last_check >= self.idle_check_s:
                self._last_check = now
                self._resume(await self._has_records())
            return
        self._woken.clear()
        with contextlib.suppress(TimeoutError):
            remaining = self.idle_check_s - (now - self._last_check)
            await asyncio.wait_for(self._woken.wait(), timeout=max(remaining, 0.0))
        if self._woken.is_set():
            return
        self._last_check = time.monotonic()
        self._resume(await self._has_records())

    def _resume(self, found: set[TopicPartition]) -> None:
        """Resume the partitions where the check found records nobody announced."""
        if found:
            self.wake(partitions=found)

    async def _has_records(self) -> set[TopicPartition]:
        """The paused partitions with records past the consumer's position (one ListOffsets
        request); any doubt counts as yes for all of them."""
        assert self.consumer is not None
        paused = sorted(self.consumer.paused())
        if not paused:
            return set()
        found: set[TopicPartition] = set()
        try:
            async with asyncio.timeout(10.0):
                ends = await self.consumer.end_offsets(paused)
                for tp, end in ends.items():
                    if end > await self.consumer.position(tp):
                        found.add(tp)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.info("consumer.idle_check.failed", error=repr(exc))
            return set(paused)
        return found

    async def process_batch(self, records: list[ConsumerRecord[bytes, bytes]]) -> list[str]:
        """Handle one partition's records in order, all in one transaction when all goes well.

        If any record cannot be parsed, or any handler raises, or the commit fails, nothing of
        that transaction stands and every record of the batch is redone alone through ``process``
        (own transaction, retries, DLQ). The inbox makes the redo safe.
        """
        parsed = [self._parse(record) for record in records]
        events = [item for item in parsed if not isinstance(item, ValueError)]
        if len(events) == len(records):
            try:
                outcomes: list[tuple[str, str]] = []
                async with self.sessionmaker() as session, session.begin():
                    fresh = await self._mark_batch(session, [event for event, _ in events])
                    for record, (event, payload) in zip(records, events, strict=True):
                        if event.id not in fresh:
                            outcomes.append((record.topic, "duplicate"))
                            continue
                        fresh.discard(event.id)
                        with bound(event_id=event.id, event_type=event.type):
                            await self.handlers[event.type](session, event, payload)
                        outcomes.append((record.topic, "processed"))
                return [self._count(topic, outcome) for topic, outcome in outcomes]
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.info("consumer.batch.fallback", records=len(records), error=repr(exc))
        return [await self.process(record) for record in records]

    def _parse(
        self, record: ConsumerRecord[bytes, bytes]
    ) -> tuple[CloudEvent, EventPayload] | ValueError:
        size = len(record.value or b"")
        if size > self.max_record_bytes:
            return OversizedRecordError(
                f"record value is {size} bytes, more than the {self.max_record_bytes} accepted"
            )
        try:
            event, payload = parse_event(record.value or b"")
            if event.type != record.topic:
                raise ValueError(f"event type {event.type!r} published on topic {record.topic!r}")
        except ValueError as exc:
            return exc
        return event, payload

    async def process(self, record: ConsumerRecord[bytes, bytes]) -> str:
        """Handle one record alone; returns the outcome (processed, duplicate, dead_lettered)."""
        topic = record.topic
        parsed = self._parse(record)
        if isinstance(parsed, ValueError):
            reason = "oversized" if isinstance(parsed, OversizedRecordError) else "unparseable"
            await self.dead_letter(record, error=parsed, reason=reason)
            return self._count(topic, "dead_lettered")
        event, payload = parsed
        with bound(event_id=event.id, event_type=event.type):
            last_error: BaseException | None = None
            attempt = 0
            while attempt < self.max_attempts:
                attempt += 1
                try:
                    outcome = await self._handle_once(event, payload)
                    return self._count(topic, outcome)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if is_transient(exc):
                        # The database, not the record, is the problem: wait, never dead-letter.
                        log.warning("consumer.transient.retry", error=repr(exc))
                        await asyncio.sleep(min(self.retry_backoff_s * 10, 5.0))
                        attempt -= 1
                        continue
                    last_error = exc
                    log.warning("consumer.handler.failed", attempt=attempt, error=repr(exc))
                    if attempt < self.max_attempts:
                        await asyncio.sleep(self.retry_backoff_s * 2 ** (attempt - 1))
            assert last_error is not None
            await self.dead_letter(record, error=last_error, reason="handler_failed")
            return self._count(topic, "dead_lettered")

    async def _handle_once(self, event: CloudEvent, payload: EventPayload) -> str:
        async with self.sessionmaker() as session, session.begin():
            return await self._apply(session, event, payload)

    async def _mark_batch(self, session: AsyncSession, events: list[CloudEvent]) -> set[str]:
        """Insert the batch's inbox rows; the ids not seen before (their handlers run)."""
        found = await session.execute(
            self._mark_all,
            {
                "consumer": self.group_id,
                "event_ids": [event.id for event in events],
                "topics": [event.type for event in events],
            },
        )
        return {row[0] for row in found}

    async def _apply(self, session: AsyncSession, event: CloudEvent, payload: EventPayload) -> str:
        """Inbox insert + handler, inside the caller's transaction."""
        with bound(event_id=event.id, event_type=event.type):
            fresh = await session.execute(
                self._mark, {"consumer": self.group_id, "event_id": event.id, "topic": event.type}
            )
            if fresh.first() is None:
                log.debug("consumer.duplicate.skipped")
                return "duplicate"
            await self.handlers[event.type](session, event, payload)
            return "processed"

    async def dead_letter(
        self, record: ConsumerRecord[bytes, bytes], *, error: BaseException, reason: str
    ) -> None:
        detail = "".join(traceback.format_exception_only(error)).strip()[:2000]
        dlq_headers = [
            ("dlq-reason", reason.encode()),
            ("dlq-error", detail.encode()),
            ("dlq-error-type", type(error).__name__.encode()),
            ("dlq-original-topic", record.topic.encode()),
            ("dlq-original-partition", str(record.partition).encode()),
            ("dlq-original-offset", str(record.offset).encode()),
            ("dlq-consumer-group", self.group_id.encode()),
        ]
        topic = f"{record.topic}.dlq"
        try:
            await self.producer.send_and_wait(
                topic,
                value=record.value,
                key=record.key,
                headers=[*(record.headers or []), *dlq_headers],
            )
        except MessageSizeTooLargeError:
            # Still dead-letter it, without value and original headers: retrying would fail the
            # same way forever and stop the consumer on this record.
            size = str(len(record.value or b"")).encode()
            await self.producer.send_and_wait(
                topic,
                value=None,
                key=record.key,
                headers=[*dlq_headers, ("dlq-value-dropped", size)],
            )
        log.error(
            "consumer.dead_lettered",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            reason=reason,
            error=detail,
        )

    def _count(self, topic: str, outcome: str) -> str:
        CONSUMED.labels(self.service, topic, outcome).inc()
        return outcome


def is_transient(exc: BaseException) -> bool:
    """Errors that say the database is unreachable, restarting or busy, not that the record is
    bad: never dead-lettered. "the database system is starting up" (57P03) arrives as a plain
    ``DBAPIError``; dead-lettering it lost an event in the PostgreSQL-restart fault test."""
    if isinstance(exc, OperationalError | OSError | ConnectionError):
        return True
    if isinstance(exc, DBAPIError) and bool(exc.connection_invalidated):
        return True
    return database_unavailable(exc)


__all__ = [
    "DEFAULT_MAX_RECORD_BYTES",
    "EventConsumer",
    "Handler",
    "OversizedRecordError",
    "TopicPartition",
    "inbox_table",
]
