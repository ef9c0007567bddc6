"""Live updates: the experiment, dataset job, NAS trial, webhook delivery and inbox events from
Kafka, pushed to each user's open pages over Server-Sent Events.

Every console process reads the topics itself, without a consumer group (each must see every
event, since a user's pages may be open on any replica), from the end: an event stream is for
what happens while the page is open; what happened before, the page read from the API. Each
event goes only to the streams of its user: the experiment's, job's, campaign's or endpoint's
owner, the inbox's user (the unread badge follows ``notification.created`` and
``notification.read``). A browser too slow to
take its events gets a ``resync`` instead of an ever longer queue.

With no page open the consumer pauses its partitions, so an idle console sends the broker no
fetch requests (Tansu holds every fetch for its full wait time, so polling an empty topic costs
the broker CPU). The first stream to open moves every partition to its end, resumes them and
only then says ``hello``: an event published after the page's ``hello`` is never missed.
While pages are open and nothing happens, the consumer rests too (``Resting``): after
``live_idle_pause_after_s`` without a record it pauses every partition, and a ListOffsets
request every ``live_idle_check_s`` resumes them all once any has a new record. Tansu's work
per fetch grows with the partitions it names: fetching the 112 partitions of the live topics
twenty times a second cost it about 0.16 of a core with nothing happening; the check costs it
about 0.004. The records of one fetch are handled in the order they were published
(``in_time_order``), not partition by partition.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from runyard.console.config import Settings
from runyard.console.web import StateDep, UserApiDep
from runyard.shared.contracts import alerts as alert_contracts
from runyard.shared.contracts import experiments as contracts
from runyard.shared.contracts import models as model_contracts
from runyard.shared.contracts import notifications, webhooks
from runyard.shared.events import EventPayload, parse_event
from runyard.shared.logging import get_logger

log = get_logger(__name__)

LIVE_EVENTS: list[type[EventPayload]] = [
    contracts.ExperimentEpochsLogged,
    contracts.ExperimentCreated,
    contracts.ExperimentUpdated,
    contracts.ExperimentDeleted,
    contracts.ExperimentStarted,
    contracts.ExperimentPaused,
    contracts.ExperimentResumed,
    contracts.ExperimentCompleted,
    contracts.ExperimentFailed,
    contracts.ExperimentCancelled,
    contracts.ExperimentStalled,
    notifications.NotificationCreated,
    notifications.NotificationRead,
    # a dataset job's page: its bar, and its end
    contracts.DatasetGenerationProgressed,
    contracts.DatasetGenerationCompleted,
    contracts.DatasetGenerationFailed,
    contracts.DatasetImportProgressed,
    contracts.DatasetImportCompleted,
    contracts.DatasetImportFailed,
    # a NAS campaign's page
    contracts.NasTrialCompleted,
    contracts.NasCampaignCompleted,
    # an endpoint's deliveries (one event per endpoint and short window)
    webhooks.WebhookDeliveriesUpdated,
    # a model's page: its aliases and versions
    model_contracts.ModelVersionCreated,
    model_contracts.ModelVersionAliasSet,
    model_contracts.ModelVersionAliasRemoved,
    model_contracts.ModelVersionArchived,
    # the alerts list and an experiment's alerts panel
    alert_contracts.AlertTriggered,
    alert_contracts.AlertResolved,
]
#: fields a page never needs
PRIVATE_FIELDS = frozenset({"owner_email", "owner_full_name"})

router = APIRouter()


class Hub:
    """Open event streams by user; ``publish`` hands an event to its owner's streams."""

    def __init__(self, queue_size: int) -> None:
        self.queue_size = queue_size
        self.streams: dict[str, set[asyncio.Queue[str]]] = {}
        self.consuming = False
        #: set while some stream is open (the consumer reads), clear while none is (it pauses)
        self.wanted = asyncio.Event()
        #: set once the consumer reads from the end for the open streams
        self.live = asyncio.Event()
        #: the consumer's partition-by-partition rest while pages are open (set by ``consume``)
        self.resting: Resting | None = None

    def subscribe(self, user_id: str) -> asyncio.Queue[str]:
        queue: asyncio.Queue[str] = asyncio.Queue(self.queue_size)
        self.streams.setdefault(user_id, set()).add(queue)
        self.wanted.set()
        return queue

    def unsubscribe(self, user_id: str, queue: asyncio.Queue[str]) -> None:
        streams = self.streams.get(user_id)
        if streams is not None:
            streams.discard(queue)
            if not streams:
                del self.streams[user_id]
        if not self.streams:
            self.wanted.clear()

    def publish(self, owner_id: str, event_type: str, data: dict[str, Any]) -> int:
        streams = self.streams.get(owner_id)
        if not streams:
            return 0
        frame = sse_frame(event_type, data)
        for queue in streams:
            try:
                queue.put_nowait(frame)
            except asyncio.QueueFull:
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(sse_frame("resync", {}))
        return len(streams)

    def handle(self, value: bytes | None) -> None:
        """One Kafka record: an experiment event goes to its owner's open pages, an inbox event
        to its user's."""
        if not value:
            return
        try:
            event, payload = parse_event(value)
        except Exception as exc:  # not ours to dead-letter: the services' consumers do
            log.info("console.live.unreadable", error=repr(exc)[:200])
            return
        owner = getattr(payload, "owner_id", None) or getattr(payload, "user_id", None)
        if owner is None:
            return
        data = {k: v for k, v in payload.model_dump(mode="json").items() if k not in PRIVATE_FIELDS}
        data["event_id"] = event.id
        data["time"] = event.time.isoformat() if hasattr(event.time, "isoformat") else event.time
        self.publish(str(owner), event.type, data)


def sse_frame(event_type: str, data: dict[str, Any]) -> str:
    return f"event: {event_type}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def consume(settings: Settings, hub: Hub) -> None:
    """Read the live topics from their end while a page is open, for as long as the process
    runs; paused while no page is."""
    consumer = AIOKafkaConsumer(
        *(model.event_type for model in LIVE_EVENTS),
        **settings.kafka_client_options(),
        group_id=None,
        client_id=f"runyard-console-{settings.instance}",
        auto_offset_reset="latest",
        enable_auto_commit=False,
        fetch_max_wait_ms=50,
        # aiokafka's fetch routine otherwise wakes every 200 ms even while paused
        consumer_timeout_ms=2000,
    )
    await consumer.start()
    # without a group the partitions are assigned from the first metadata answer
    for _ in range(100):
        if consumer.assignment():
            break
        await asyncio.sleep(0.1)
    hub.consuming = True
    log.info("console.live.consuming", topics=len(LIVE_EVENTS))
    resting = hub.resting = Resting(
        consumer, settings.live_idle_pause_after_s, settings.live_idle_check_s
    )
    loop = asyncio.get_running_loop()
    try:
        while True:
            if not hub.wanted.is_set():
                hub.live.clear()
                consumer.pause(*consumer.assignment())
                await hub.wanted.wait()
                await to_the_end(consumer)
                resting.fresh(loop.time())
                hub.live.set()
            elif not hub.live.is_set():
                await to_the_end(consumer)
                resting.fresh(loop.time())
                hub.live.set()
            batches = await consumer.getmany(timeout_ms=resting.wait_ms)
            if batches:
                resting.saw(loop.time())
            for record in in_time_order(batches.values()):
                hub.handle(record.value)
            await resting.tend(loop.time())
    finally:
        hub.consuming = False
        hub.live.clear()
        await consumer.stop()


def in_time_order(batches: Iterable[list[ConsumerRecord[Any, Any]]]) -> Iterator[Any]:
    """The records of several partitions merged by their time, each partition's in its own
    order. Partitions resumed by the same check come in one fetch: a job's last
    ``*.progressed`` and its ``*.completed`` (two topics) must reach the page in the order they
    were published, not in the order of the fetch's partitions."""
    return heapq.merge(*batches, key=lambda record: record.timestamp)


class Resting:
    """While pages are open and nothing happens: after ``after_s`` without a record every
    partition is paused, so no fetch goes to the broker; every ``check_s`` one ListOffsets
    request asks whether any paused partition's end moved past the consumer's position, and if
    one did, all are resumed, to be read from where they paused (nothing skipped; the first
    event after a rest waits up to ``check_s`` more). All together, not partition by partition:
    a page needs its events in the order they were published, across topics (a job's last
    ``*.progressed`` before its ``*.completed``), and partitions fetched at different paces
    would deliver them out of it."""

    def __init__(self, consumer: AIOKafkaConsumer, after_s: float, check_s: float) -> None:
        self.consumer = consumer
        self.after_s = after_s
        self.check_s = check_s
        self.wait_ms = max(1, int(check_s * 1000))
        self.last = 0.0
        self.checked = 0.0

    def fresh(self, now: float) -> None:
        """Every partition was just resumed."""
        self.last = now

    def saw(self, now: float) -> None:
        self.last = now

    @property
    def resting(self) -> bool:
        assigned = self.consumer.assignment()
        return bool(assigned) and not (assigned - self.consumer.paused())

    async def tend(self, now: float) -> None:
        if not self.resting:
            if now - self.last >= self.after_s:
                self.consumer.pause(*self.consumer.assignment())
                self.checked = now
            return
        if now - self.checked < self.check_s:
            return
        self.checked = now
        paused = sorted(self.consumer.paused())
        try:
            ends = await self.consumer.end_offsets(paused)
            moved = any([end > await self.consumer.position(tp) for tp, end in ends.items()])
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any doubt: fetch again
            log.info("console.live.check_failed", error=repr(exc)[:200])
            moved = True
        if moved:
            self.last = now
            self.consumer.resume(*paused)


async def to_the_end(consumer: AIOKafkaConsumer) -> None:
    """Move every partition to its end and resume it; returns once the positions are known, so
    whatever is published afterwards will be read."""
    partitions = sorted(consumer.assignment())
    if partitions:
        await consumer.seek_to_end(*partitions)
        for partition in partitions:
            await consumer.position(partition)
        consumer.resume(*partitions)


async def stream(
    request: Request, hub: Hub, user_id: str, settings: Settings
) -> AsyncIterator[str]:
    queue = hub.subscribe(user_id)
    loop = asyncio.get_running_loop()
    ends_at = loop.time() + settings.sse_max_connection_s
    try:
        # a paused consumer moves to the end first; a console that cannot read still streams
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(hub.live.wait(), timeout=settings.sse_heartbeat_s)
        yield "retry: 1000\n\n" + sse_frame("hello", {"user_id": user_id})
        while loop.time() < ends_at:
            try:
                timeout = min(settings.sse_heartbeat_s, max(0.0, ends_at - loop.time()))
                yield await asyncio.wait_for(queue.get(), timeout=timeout)
            except TimeoutError:
                if await request.is_disconnected():
                    return
                yield ": keep-alive\n\n"
    finally:
        hub.unsubscribe(user_id, queue)


@router.get("/events")
async def events(request: Request, state: StateDep, api: UserApiDep) -> StreamingResponse:
    """The signed-in user's live events. The session is checked (its token renewed when due)
    when the stream opens; the stream ends after ``sse_max_connection_s`` and the browser
    reconnects, so a session ended elsewhere stops its streams within that time."""
    await api.get("/auth/me")
    hub: Hub | None = state.hub
    if hub is None:
        return StreamingResponse(iter([sse_frame("disabled", {})]), media_type="text/event-stream")
    return StreamingResponse(
        stream(request, hub, api.session.user_id, state.settings),
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )
