"""Transactional outbox: events are rows written with the state change, a relay publishes them.

``add_event`` runs inside the business transaction. ``OutboxRelay`` wakes on LISTEN/NOTIFY (a
statement trigger on the table notifies at commit) with a polling fallback, claims batches with
``FOR UPDATE SKIP LOCKED`` (several replicas can relay at once), publishes each row with the
aggregate id as key, waits for the broker's acks and only then marks the rows published.
A crash between publish and mark republishes the batch: consumers dedupe on the event id.

The transaction that marks a batch published also notifies ``runyard_published`` with the batch's
topics: consumers that share the database pause while idle and wake on it (``inbox.py``).

A broker that comes back without the records it acknowledged (an in-memory broker restarted, a
topic deleted and created again, an unclean leader election) shows itself in the acks: a
partition hands out an offset at or below one it already acknowledged to this relay. The relay
then marks the rows it published in the last ``replay_window_s`` unpublished again, so they are
published anew, and again ``replay_again_after_s`` after the reset (5 and 15 s), in case the
broker that just came back loses records again
(docs/decisions/0010-outbox-replay-after-broker-reset.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import Counter, Gauge
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    func,
    insert,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from runyard.shared.db import PgListener, asyncpg_dsn
from runyard.shared.events import CONTENT_TYPE, CloudEvent, EventPayload, make_event
from runyard.shared.logging import get_logger

log = get_logger(__name__)

OUTBOX_BACKLOG = Gauge("runyard_outbox_backlog", "Unpublished outbox rows", ["service"])
OUTBOX_OLDEST_AGE = Gauge(
    "runyard_outbox_oldest_age_seconds", "Age of the oldest unpublished outbox row", ["service"]
)
OUTBOX_PUBLISHED = Counter("runyard_outbox_published", "Outbox rows published", ["service"])
OUTBOX_PUBLISH_ERRORS = Counter(
    "runyard_outbox_publish_errors", "Failed outbox publish batches", ["service"]
)
OUTBOX_BROKER_RESETS = Counter(
    "runyard_outbox_broker_resets",
    "Times a partition's offsets went backwards (the broker lost acknowledged records)",
    ["service"],
)
OUTBOX_REPLAYED = Counter(
    "runyard_outbox_replayed",
    "Published outbox rows queued again after a broker reset",
    ["service"],
)

_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")


def check_identifier(name: str) -> str:
    if not _IDENT.match(name):
        raise ValueError(f"not a safe SQL identifier: {name!r}")
    return name


def notify_channel(schema: str) -> str:
    return f"runyard_outbox_{check_identifier(schema)}"


#: Every relay notifies this channel when it committed a published batch; the payload is the
#: batch's topics, comma-separated, or ``*`` when they do not fit in a notification.
PUBLISHED_CHANNEL = "runyard_published"
#: PostgreSQL refuses a notification payload of 8000 bytes or more
_MAX_NOTIFY_PAYLOAD = 7900


def published_payload(topics: list[str]) -> str:
    """The ``runyard_published`` payload for a batch of these topics."""
    payload = ",".join(sorted(set(topics)))
    return payload if len(payload.encode()) <= _MAX_NOTIFY_PAYLOAD else "*"


def outbox_table(metadata: MetaData) -> Table:
    """The ``outbox`` table in ``metadata``'s schema (call once per service metadata)."""
    return Table(
        "outbox",
        metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=True),
        Column("event_id", Text, nullable=False, unique=True),
        Column("topic", Text, nullable=False),
        Column("key", Text, nullable=False),
        Column("payload", JSONB, nullable=False),
        Column("headers", JSONB, nullable=True),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("published_at", DateTime(timezone=True), nullable=True),
        Column("attempts", Integer, nullable=False, server_default="0"),
        Column("last_error", Text, nullable=True),
        Index(
            "ix_outbox_unpublished",
            "id",
            postgresql_where=text("published_at IS NULL"),
        ),
        Index("ix_outbox_published_at", "published_at"),
    )


def outbox_trigger_ddl(schema: str) -> list[str]:
    """DDL for the statement trigger that wakes relays at commit time."""
    s = check_identifier(schema)
    channel = notify_channel(schema)
    return [
        f"""CREATE OR REPLACE FUNCTION {s}.outbox_notify() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN PERFORM pg_notify('{channel}', ''); RETURN NULL; END $$""",
        f"""CREATE TRIGGER outbox_notify AFTER INSERT ON {s}.outbox
            FOR EACH STATEMENT EXECUTE FUNCTION {s}.outbox_notify()""",
    ]


_tables: dict[str, Table] = {}


def _table_for(schema: str) -> Table:
    if schema not in _tables:
        _tables[schema] = outbox_table(MetaData(schema=check_identifier(schema)))
    return _tables[schema]


def session_schema(session: AsyncSession) -> str:
    schema = session.info.get("schema")
    if not schema:
        raise RuntimeError("session has no schema: build it with create_sessionmaker(..., schema=)")
    return str(schema)


def session_source(session: AsyncSession) -> str:
    """The CloudEvents ``source`` of the service the session belongs to."""
    return str(session.info.get("source") or f"/runyard/{session_schema(session)}")


async def emit(
    session: AsyncSession,
    payload: EventPayload,
    *,
    subject: str | uuid.UUID,
    sequence: int | None = None,
) -> CloudEvent:
    """Write ``payload`` as an event of the session's service to the outbox, inside the caller's
    transaction: it is published if and only if the transaction commits. ``subject`` is the
    aggregate id (also the record key); ``sequence`` its version, for readers that drop stale
    updates. Returns the event (its id is what consumers dedupe on)."""
    event = make_event(payload, source=session_source(session), subject=subject, sequence=sequence)
    await add_event(session, event)
    return event


async def add_event(session: AsyncSession, event: CloudEvent, *, key: str | None = None) -> None:
    """Write ``event`` to the outbox inside the caller's transaction (never publishes directly)."""
    await add_events(session, [event], keys=None if key is None else [key])


async def add_events(
    session: AsyncSession, events: list[CloudEvent], *, keys: list[str] | None = None
) -> None:
    if not events:
        return
    table = _table_for(session_schema(session))
    rows = [
        {
            "event_id": e.id,
            "topic": e.topic,
            "key": keys[i] if keys else e.subject,
            "payload": e.model_dump(mode="json", exclude_none=True),
            "headers": None,
        }
        for i, e in enumerate(events)
    ]
    await session.execute(insert(table), rows)


class Producer(Protocol):
    async def send(
        self, topic: str, value: bytes | None = ..., key: bytes | None = ..., headers: Any = ...
    ) -> Any: ...


@dataclass(frozen=True)
class OffsetsWentBack:
    """A partition acknowledged ``offset`` after it had acknowledged ``previous`` >= offset."""

    topic: str
    partition: int
    offset: int
    previous: int


def offsets_after(
    acked: dict[tuple[str, int], int], acks: list[Any]
) -> tuple[OffsetsWentBack | None, dict[tuple[str, int], int]]:
    """The highest acknowledged offset per (topic, partition) once ``acks`` (RecordMetadata of
    a batch, in send order) are counted, and the first partition whose offset went back, if any.

    Offsets of a partition only grow, so going back means the broker lost records it had
    acknowledged. After that the memory of every partition is dropped (the whole broker may be
    new): later batches compare with the new logs only, so one reset is reported once."""
    after = dict(acked)
    reset = None
    for ack in acks:
        topic = getattr(ack, "topic", None)
        partition = getattr(ack, "partition", None)
        offset = getattr(ack, "offset", None)
        if not isinstance(topic, str) or not isinstance(partition, int):
            continue
        if not isinstance(offset, int) or offset < 0:
            continue
        previous = after.get((topic, partition))
        if reset is None and previous is not None and offset <= previous:
            reset = OffsetsWentBack(topic, partition, offset, previous)
            after.clear()
        after[(topic, partition)] = max(offset, after.get((topic, partition), -1))
    return reset, after


class OutboxRelay:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        producer: Producer,
        schema: str,
        service: str,
        batch_size: int = 500,
        poll_interval_s: float = 10.0,
        retention_hours: float = 24.0,
        prune_every_s: float = 60.0,
        replay_window_s: float = 600.0,
        replay_again_after_s: Sequence[float] = (5.0, 15.0),
    ) -> None:
        self.engine = engine
        self.producer = producer
        self.schema = check_identifier(schema)
        self.service = service
        self.batch_size = batch_size
        #: the fallback poll: LISTEN/NOTIFY wakes the relay at every commit that adds rows
        self.poll_interval_s = poll_interval_s
        self.retention_hours = retention_hours
        self.prune_every_s = prune_every_s
        #: rows published this long before a detected broker reset are published again (0: never)
        self.replay_window_s = replay_window_s
        #: after a reset, the window is published again this long after it too: a broker that
        #: just came back may still lose what it acknowledged (Tansu, creating its topics anew)
        self.replay_again_after_s = tuple(replay_again_after_s)
        #: when those replays are due (``time.monotonic()``), soonest first
        self._replays_due: list[float] = []
        #: the highest offset the broker acknowledged to this relay, per (topic, partition)
        self._acked_offsets: dict[tuple[str, int], int] = {}
        self._wake = asyncio.Event()
        #: the LISTEN connection while ``run()`` runs
        self.listener: PgListener | None = None
        self._claim = text(
            f"SELECT id, event_id, topic, key, payload, headers FROM {self.schema}.outbox "
            "WHERE published_at IS NULL ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED"
        )
        self._mark = text(
            f"UPDATE {self.schema}.outbox SET published_at = now(), attempts = attempts + 1 "
            "WHERE id = ANY(:ids)"
        )
        self._notify_published = text("SELECT pg_notify(:channel, :payload)")
        self._stats = text(
            "SELECT count(*), extract(epoch FROM now() - min(created_at)) "
            f"FROM {self.schema}.outbox "
            "WHERE published_at IS NULL"
        )
        self._replay = text(
            f"UPDATE {self.schema}.outbox SET published_at = NULL "
            "WHERE published_at >= now() - make_interval(secs => :secs)"
        )
        self._prune = text(
            f"DELETE FROM {self.schema}.outbox WHERE id IN (SELECT id FROM {self.schema}.outbox "
            "WHERE published_at < now() - make_interval(secs => :secs) LIMIT 5000)"
        )

    async def publish_batch(self) -> int:
        """Publish one batch of unpublished rows; returns how many were published."""
        async with self.engine.begin() as conn:
            rows = (await conn.execute(self._claim, {"limit": self.batch_size})).all()
            if not rows:
                return 0
            futures = []
            for row in rows:
                headers = [("content-type", CONTENT_TYPE.encode())]
                headers += [(k, str(v).encode()) for k, v in (row.headers or {}).items()]
                futures.append(
                    await self.producer.send(
                        row.topic,
                        value=json.dumps(row.payload, separators=(",", ":")).encode(),
                        key=row.key.encode(),
                        headers=headers,
                    )
                )
            acks = await asyncio.gather(*futures)
            await conn.execute(self._mark, {"ids": [r.id for r in rows]})
            # delivered at commit: the records are in the broker by then
            await conn.execute(
                self._notify_published,
                {
                    "channel": PUBLISHED_CHANNEL,
                    "payload": published_payload([r.topic for r in rows]),
                },
            )
            reset, acked_offsets = offsets_after(self._acked_offsets, acks)
            if reset is not None and self.replay_window_s > 0:
                # This batch too: part of it may have been acked by the broker that was lost.
                replayed = (
                    await conn.execute(self._replay, {"secs": self.replay_window_s})
                ).rowcount
                log.warning(
                    "outbox.broker_reset.replay",
                    topic=reset.topic,
                    partition=reset.partition,
                    offset=reset.offset,
                    previously_acked=reset.previous,
                    replayed=replayed,
                    window_s=self.replay_window_s,
                )
        # Only once the marks (and the replay) are committed: a failed transaction publishes
        # the batch again and must find the same reset again.
        self._acked_offsets = acked_offsets
        if reset is not None:
            OUTBOX_BROKER_RESETS.labels(self.service).inc()
            if self.replay_window_s > 0:
                OUTBOX_REPLAYED.labels(self.service).inc(replayed or 0)
                now = time.monotonic()
                self._replays_due = sorted(now + after for after in self.replay_again_after_s)
                self.wake()  # the replayed rows are due now, not at the next poll
        OUTBOX_PUBLISHED.labels(self.service).inc(len(rows))
        return len(rows)

    async def replay_again_if_due(self) -> int:
        """The window published again once more after a reset, when that is due; how many rows.
        Harmless when nothing was lost: consumers drop event ids they handled before."""
        if not self._replays_due or self._replays_due[0] > time.monotonic():
            return 0
        async with self.engine.begin() as conn:
            replayed = (await conn.execute(self._replay, {"secs": self.replay_window_s})).rowcount
        self._replays_due.pop(0)
        log.warning(
            "outbox.broker_reset.replay_again", replayed=replayed, window_s=self.replay_window_s
        )
        OUTBOX_REPLAYED.labels(self.service).inc(replayed or 0)
        return int(replayed or 0)

    def next_replay_in(self, wait: float) -> float:
        """``wait``, or less when a replay after a reset is due sooner."""
        if not self._replays_due:
            return wait
        return max(0.0, min(wait, self._replays_due[0] - time.monotonic()))

    async def update_metrics(self) -> tuple[int, float]:
        async with self.engine.connect() as conn:
            count, age = (await conn.execute(self._stats)).one()
        OUTBOX_BACKLOG.labels(self.service).set(count)
        OUTBOX_OLDEST_AGE.labels(self.service).set(float(age or 0.0))
        return int(count), float(age or 0.0)

    async def prune(self) -> int:
        total = 0
        while True:
            async with self.engine.begin() as conn:
                result = await conn.execute(self._prune, {"secs": self.retention_hours * 3600})
            deleted = result.rowcount or 0
            total += deleted
            if deleted < 5000:
                return total

    def wake(self) -> None:
        """Look for unpublished rows now (a NOTIFY arrived, or the LISTEN started again)."""
        self._wake.set()

    async def run(self) -> None:
        dsn = asyncpg_dsn(self.engine.url.render_as_string(hide_password=False))
        self.listener = PgListener(
            dsn,
            notify_channel(self.schema),
            on_notify=lambda _payload: self.wake(),
            on_connect=self.wake,
        )
        listening = asyncio.create_task(self.listener.run())
        last_prune = 0.0
        error_backoff = 0.5
        try:
            while True:
                self._wake.clear()
                wait = self.poll_interval_s
                try:
                    await self.replay_again_if_due()
                    published = await self.publish_batch()
                    await self.update_metrics()
                    if time.monotonic() - last_prune > self.prune_every_s:
                        last_prune = time.monotonic()
                        await self.prune()
                    error_backoff = 0.5
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    OUTBOX_PUBLISH_ERRORS.labels(self.service).inc()
                    log.warning("outbox.publish.failed", error=repr(exc))
                    published = 0
                    error_backoff = min(error_backoff * 2, 30.0)
                    wait = error_backoff
                if published >= self.batch_size:
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.next_replay_in(wait))
        finally:
            listening.cancel()
            await asyncio.gather(listening, return_exceptions=True)
