"""Every change of a user's unread inbox entries is published in its transaction with the unread
count after it (``notification.created``, ``notification.read``): the console's badge follows."""

from __future__ import annotations

import uuid

from runyard.shared.testing import identity_headers
from runyard.shared.testing.events import experiment_completed, user_registered
from services.notifications.tests.notifications_helpers import (
    INBOX_TOPICS,
    experiment_failed,
    handle,
    outbox_events,
)

URL = "/api/v1/notifications/inbox"


async def inbox_events(sessionmaker) -> list:
    return [e for e in await outbox_events(sessionmaker, inbox=True) if e.topic in INBOX_TOPICS]


async def test_each_new_inbox_entry_publishes_its_users_unread_count(sessionmaker) -> None:
    me, other = uuid.uuid4(), uuid.uuid4()
    await handle(sessionmaker, user_registered(me))
    await handle(sessionmaker, user_registered(other))
    first = experiment_completed(me, name="run a")

    await handle(sessionmaker, first)
    await handle(sessionmaker, experiment_failed(me))
    await handle(sessionmaker, experiment_completed(other, name="theirs"))

    events = await inbox_events(sessionmaker)
    assert [e.topic for e in events] == ["notification.created"] * 3
    mine = [e for e in events if e.key == str(me)]
    assert [e.payload["data"]["unread_count"] for e in mine] == [1, 2]
    data = mine[0].payload["data"]
    assert data["user_id"] == str(me)
    assert data["trigger_event_type"] == "experiment.completed"
    assert data["trigger_event_id"] == first.id
    assert data["title"] == "Experiment completed"
    assert mine[0].payload["subject"] == str(me)  # keyed by user: one user's counts in order
    theirs = [e for e in events if e.key == str(other)]
    assert [e.payload["data"]["unread_count"] for e in theirs] == [1]


async def test_an_event_already_in_the_inbox_publishes_nothing_again(sessionmaker) -> None:
    me = uuid.uuid4()
    await handle(sessionmaker, user_registered(me))
    completed = experiment_completed(me)

    await handle(sessionmaker, completed)
    await handle(sessionmaker, completed)  # redelivered

    assert len(await inbox_events(sessionmaker)) == 1


async def test_marking_read_publishes_the_lower_count_once_and_nothing_when_nothing_changed(
    client, sessionmaker
) -> None:
    me = uuid.uuid4()
    await handle(sessionmaker, user_registered(me))
    for i in range(3):
        await handle(sessionmaker, experiment_completed(me, name=f"run {i}"))
    headers = identity_headers(me)
    newest = (await client.get(URL, headers=headers)).json()["items"][0]

    assert (await client.post(f"{URL}/{newest['id']}/read", headers=headers)).status_code == 200
    await client.post(f"{URL}/{newest['id']}/read", headers=headers)  # already read
    assert (await client.post(f"{URL}/read-all", headers=headers)).json() == {"marked_read": 2}
    await client.post(f"{URL}/read-all", headers=headers)  # nothing left to mark

    read = [e for e in await inbox_events(sessionmaker) if e.topic == "notification.read"]
    assert [
        (
            e.payload["data"]["notification_id"],
            e.payload["data"]["marked_read"],
            e.payload["data"]["unread_count"],
        )
        for e in read
    ] == [(newest["id"], 1, 2), (None, 2, 0)]
    assert {e.key for e in read} == {str(me)}


async def test_someone_elses_entry_is_not_marked_and_publishes_nothing(
    client, sessionmaker
) -> None:
    owner, intruder = uuid.uuid4(), uuid.uuid4()
    await handle(sessionmaker, user_registered(owner))
    await handle(sessionmaker, experiment_completed(owner))
    entry = (await client.get(URL, headers=identity_headers(owner))).json()["items"][0]

    response = await client.post(f"{URL}/{entry['id']}/read", headers=identity_headers(intruder))

    assert response.status_code == 404
    assert [e.topic for e in await inbox_events(sessionmaker)] == ["notification.created"]
