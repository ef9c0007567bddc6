"""The in-app inbox over the API: list with a cursor, unread count, mark read, read all."""

from __future__ import annotations

import uuid

from runyard.shared.testing import identity_headers
from runyard.shared.testing.events import experiment_completed, user_registered
from services.notifications.tests.notifications_helpers import experiment_failed, handle

URL = "/api/v1/notifications/inbox"


async def fill_inbox(sessionmaker, user_id: uuid.UUID, count: int) -> None:
    await handle(sessionmaker, user_registered(user_id))
    for i in range(count):
        await handle(sessionmaker, experiment_completed(user_id, name=f"run {i}"))


async def test_inbox_lists_the_callers_notifications_newest_first_with_a_cursor(
    client, sessionmaker
) -> None:
    me, other = uuid.uuid4(), uuid.uuid4()
    await fill_inbox(sessionmaker, me, 3)
    await fill_inbox(sessionmaker, other, 1)
    headers = identity_headers(me)

    first = (await client.get(URL, params={"limit": 2}, headers=headers)).json()
    second = (
        await client.get(URL, params={"limit": 2, "cursor": first["next_cursor"]}, headers=headers)
    ).json()

    assert first["unread_count"] == 3
    assert second["next_cursor"] is None
    bodies = [item["body"] for item in first["items"] + second["items"]]
    assert bodies == [f'Experiment "run {i}" completed after 10 epochs' for i in (2, 1, 0)]
    assert {item["title"] for item in first["items"]} == {"Experiment completed"}
    assert first["items"][0]["data"]["name"] == "run 2"


async def test_marking_one_read_lowers_the_unread_count_and_filters_it_out(
    client, sessionmaker
) -> None:
    me = uuid.uuid4()
    await fill_inbox(sessionmaker, me, 2)
    headers = identity_headers(me)
    newest = (await client.get(URL, headers=headers)).json()["items"][0]

    read = await client.post(f"{URL}/{newest['id']}/read", headers=headers)
    again = await client.post(f"{URL}/{newest['id']}/read", headers=headers)

    assert read.status_code == 200
    assert read.json()["read_at"] is not None
    assert again.json()["read_at"] == read.json()["read_at"]
    count = (await client.get(f"{URL}/unread-count", headers=headers)).json()
    assert count == {"unread_count": 1}
    unread = (await client.get(URL, params={"unread_only": "true"}, headers=headers)).json()
    assert [item["id"] for item in unread["items"]] != [newest["id"]]
    assert len(unread["items"]) == 1


async def test_read_all_marks_every_unread_notification_of_the_caller_only(
    client, sessionmaker
) -> None:
    me, other = uuid.uuid4(), uuid.uuid4()
    await fill_inbox(sessionmaker, me, 2)
    await fill_inbox(sessionmaker, other, 1)
    await handle(sessionmaker, experiment_failed(me))

    response = await client.post(f"{URL}/read-all", headers=identity_headers(me))

    assert response.json() == {"marked_read": 3}
    mine = (await client.get(f"{URL}/unread-count", headers=identity_headers(me))).json()
    theirs = (await client.get(f"{URL}/unread-count", headers=identity_headers(other))).json()
    assert (mine["unread_count"], theirs["unread_count"]) == (0, 1)


async def test_someone_elses_or_unknown_notification_is_not_found(client, sessionmaker) -> None:
    owner = uuid.uuid4()
    await fill_inbox(sessionmaker, owner, 1)
    [item] = (await client.get(URL, headers=identity_headers(owner))).json()["items"]
    intruder = identity_headers(uuid.uuid4())

    stolen = await client.post(f"{URL}/{item['id']}/read", headers=intruder)
    unknown = await client.post(f"{URL}/{uuid.uuid4()}/read", headers=intruder)
    malformed = await client.post(f"{URL}/not-a-uuid/read", headers=intruder)
    bad_cursor = await client.get(URL, params={"cursor": "zzz"}, headers=intruder)

    assert (stolen.status_code, unknown.status_code) == (404, 404)
    assert stolen.headers["content-type"] == "application/problem+json"
    assert malformed.status_code == 422
    assert bad_cursor.status_code == 400
    assert (await client.get(URL, headers=identity_headers(owner))).json()["unread_count"] == 1


async def test_redelivered_event_makes_one_inbox_entry(client, sessionmaker) -> None:
    me = uuid.uuid4()
    await handle(sessionmaker, user_registered(me))
    event = experiment_completed(me)
    await handle(sessionmaker, event)
    await handle(sessionmaker, event)
    body = (await client.get(URL, headers=identity_headers(me))).json()
    assert len(body["items"]) == 1
