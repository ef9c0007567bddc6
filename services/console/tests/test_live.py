"""Live updates: experiment and inbox events read from the real broker reach only their user's
streams."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaProducer

from runyard.console import live
from runyard.console.config import Settings
from runyard.shared.contracts.experiments import ExperimentEpochsLogged, ExperimentStalled
from runyard.shared.contracts.notifications import NotificationCreated, NotificationRead
from runyard.shared.events import make_event
from runyard.shared.runtime import supervise


def epochs_logged(owner: uuid.UUID, last_epoch: int) -> bytes:
    payload = ExperimentEpochsLogged(
        experiment_id=uuid.uuid4(),
        owner_id=owner,
        name="pump cnn",
        status="running",
        first_epoch=last_epoch,
        last_epoch=last_epoch,
        epochs_written=1,
        epochs_inserted=1,
        total_epochs=last_epoch + 1,
        latest_metrics={"val_loss": 0.25},
        logged_at="2026-11-21T13:04:57Z",
    )
    event = make_event(payload, source="/runyard/experiments", subject=str(payload.experiment_id))
    return event.to_json()


async def test_an_event_goes_to_its_owners_streams_only(kafka_bootstrap: str) -> None:
    settings = Settings(environment="test", kafka_bootstrap_servers=kafka_bootstrap)
    hub = live.Hub(queue_size=10)
    ada, eve = uuid.uuid4(), uuid.uuid4()
    adas, eves = hub.subscribe(str(ada)), hub.subscribe(str(eve))
    consumer = asyncio.create_task(supervise("live", lambda: live.consume(settings, hub)))
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        while not hub.consuming:
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # the partitions are assigned and read from their end
        await producer.send_and_wait("experiment.epochs_logged", epochs_logged(ada, 7))
        frame = await asyncio.wait_for(adas.get(), timeout=20)
    finally:
        await producer.stop()
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)

    assert frame.startswith("event: experiment.epochs_logged\n")
    assert '"last_epoch":7' in frame and '"val_loss":0.25' in frame
    assert eves.empty()


def test_a_browser_too_slow_for_its_events_is_told_to_resync_not_buffered_forever() -> None:
    hub = live.Hub(queue_size=3)
    owner = str(uuid.uuid4())
    queue = hub.subscribe(owner)

    for epoch in range(10):
        hub.publish(owner, "experiment.epochs_logged", {"last_epoch": epoch})

    frames = [queue.get_nowait() for _ in range(queue.qsize())]
    assert len(frames) <= 3
    assert any(f.startswith("event: resync") for f in frames)


def test_a_closed_stream_is_forgotten() -> None:
    hub = live.Hub(queue_size=3)
    owner = str(uuid.uuid4())
    queue = hub.subscribe(owner)
    hub.unsubscribe(owner, queue)

    assert hub.publish(owner, "experiment.started", {}) == 0
    assert hub.streams == {}


def test_private_owner_fields_never_reach_a_page() -> None:
    hub = live.Hub(queue_size=3)
    owner = uuid.uuid4()
    queue = hub.subscribe(str(owner))
    from runyard.shared.contracts.experiments import ExperimentStarted

    payload = ExperimentStarted(
        experiment_id=uuid.uuid4(),
        name="x",
        owner_id=owner,
        status="running",
        owner_email="ada@example.test",
        owner_full_name="Ada L",
    )
    event = make_event(payload, source="/runyard/experiments", subject=str(payload.experiment_id))
    hub.handle(event.to_json())

    frame = queue.get_nowait()
    assert "experiment.started" in frame
    assert "ada@example.test" not in frame and "Ada L" not in frame


def inbox_event(user: uuid.UUID, unread: int) -> bytes:
    payload = NotificationCreated(
        notification_id=uuid.uuid4(),
        user_id=user,
        trigger_event_type="experiment.completed",
        trigger_event_id=str(uuid.uuid4()),
        title="Experiment completed",
        unread_count=unread,
    )
    return make_event(payload, source="/runyard/notifications", subject=str(user)).to_json()


def stalled_event(owner: uuid.UUID) -> bytes:
    payload = ExperimentStalled(
        experiment_id=uuid.uuid4(),
        name="pump cnn",
        owner_id=owner,
        status="running",
        last_seen_at="2026-11-21T13:00:00Z",
        stalled_at="2026-11-21T13:10:00Z",
        stale_after_s=600.0,
    )
    return make_event(payload, source="/runyard/experiments", subject=str(owner)).to_json()


async def test_inbox_counts_and_stalled_runs_reach_their_users_streams_only(
    kafka_bootstrap: str,
) -> None:
    settings = Settings(environment="test", kafka_bootstrap_servers=kafka_bootstrap)
    hub = live.Hub(queue_size=10)
    ada, eve = uuid.uuid4(), uuid.uuid4()
    adas, eves = hub.subscribe(str(ada)), hub.subscribe(str(eve))
    consumer = asyncio.create_task(supervise("live", lambda: live.consume(settings, hub)))
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        while not hub.consuming:
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # the partitions are assigned and read from their end
        await producer.send_and_wait("notification.created", inbox_event(ada, 4))
        await producer.send_and_wait("experiment.stalled", stalled_event(ada))
        frames = [await asyncio.wait_for(adas.get(), timeout=20) for _ in range(2)]
    finally:
        await producer.stop()
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)

    by_type = {frame.split("\n", 1)[0]: frame for frame in frames}
    assert '"unread_count":4' in by_type["event: notification.created"]
    assert '"stalled_at":"2026-11-21T13:10:00Z"' in by_type["event: experiment.stalled"]
    assert eves.empty()


def test_a_read_inbox_goes_to_its_user_with_the_new_count() -> None:
    hub = live.Hub(queue_size=3)
    ada = uuid.uuid4()
    queue = hub.subscribe(str(ada))
    payload = NotificationRead(user_id=ada, notification_id=None, marked_read=3, unread_count=0)

    hub.handle(make_event(payload, source="/runyard/notifications", subject=str(ada)).to_json())

    frame = queue.get_nowait()
    assert frame.startswith("event: notification.read\n")
    assert '"unread_count":0' in frame and '"marked_read":3' in frame


async def test_with_no_page_open_the_consumer_pauses_and_the_first_page_gets_what_follows(
    kafka_bootstrap: str,
) -> None:
    settings = Settings(environment="test", kafka_bootstrap_servers=kafka_bootstrap)
    hub = live.Hub(queue_size=10)
    ada = uuid.uuid4()
    consumer = asyncio.create_task(supervise("live", lambda: live.consume(settings, hub)))
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        while not hub.consuming:
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
        assert not hub.live.is_set()  # paused: nobody is watching
        # published while no page was open: the page read it from the API, the stream skips it
        await producer.send_and_wait("experiment.epochs_logged", epochs_logged(ada, 1))

        adas = hub.subscribe(str(ada))
        await asyncio.wait_for(hub.live.wait(), timeout=20)
        await producer.send_and_wait("experiment.epochs_logged", epochs_logged(ada, 2))
        frame = await asyncio.wait_for(adas.get(), timeout=20)
        assert '"last_epoch":2' in frame
        assert adas.empty()

        hub.unsubscribe(str(ada), adas)
        for _ in range(100):
            if not hub.live.is_set():
                break
            await asyncio.sleep(0.05)
        assert not hub.live.is_set()  # the last page closed: paused again
    finally:
        await producer.stop()
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)


async def test_with_a_page_open_and_nothing_happening_no_fetch_is_sent_and_events_still_arrive(
    kafka_bootstrap: str,
) -> None:
    """A page open on a quiet stack: every partition is paused (no fetch reaches the broker);
    events published then are found by the next check and delivered, in order, nothing
    skipped."""
    settings = Settings(
        environment="test",
        kafka_bootstrap_servers=kafka_bootstrap,
        live_idle_pause_after_s=0.5,
        live_idle_check_s=0.2,
    )
    hub = live.Hub(queue_size=1000)
    ada = uuid.uuid4()
    consumer = asyncio.create_task(supervise("live", lambda: live.consume(settings, hub)))
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        adas = hub.subscribe(str(ada))
        await asyncio.wait_for(hub.live.wait(), timeout=20)
        resting = hub.resting
        assert resting is not None
        for _ in range(200):
            if resting.resting:
                break
            await asyncio.sleep(0.05)
        assert resting.resting  # every partition paused while the page is open

        key = str(ada).encode()  # one partition: the two are read in order
        await producer.send_and_wait("notification.created", inbox_event(ada, 1), key=key)
        await producer.send_and_wait("experiment.stalled", stalled_event(ada))
        await producer.send_and_wait("notification.created", inbox_event(ada, 2), key=key)
        frames = [await asyncio.wait_for(adas.get(), timeout=20) for _ in range(3)]
    finally:
        await producer.stop()
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)

    counts = [
        f.split('"unread_count":')[1].split(",")[0].split("}")[0]
        for f in frames
        if f.startswith("event: notification.created")
    ]
    assert counts == ["1", "2"]
    assert any(f.startswith("event: experiment.stalled") for f in frames)


def test_records_of_several_partitions_are_handled_in_the_order_they_were_published() -> None:
    """A job's last progress and its completion come from two topics in one fetch: merged by
    time, each partition keeping its own order (even if a clock stepped back within it)."""
    from types import SimpleNamespace

    progressed = [SimpleNamespace(timestamp=t, value=f"p{t}") for t in (100, 300, 250)]
    completed = [SimpleNamespace(timestamp=t, value=f"c{t}") for t in (200, 400)]

    merged = [r.value for r in live.in_time_order([completed, progressed])]

    assert merged == ["p100", "c200", "p300", "p250", "c400"]
