from __future__ import annotations

import uuid

from runyard.shared.testing import identity_headers
from runyard.shared.testing.events import experiment_completed, user_registered
from services.notifications.tests.notifications_helpers import handle


async def queue_emails(sessionmaker, user_id: uuid.UUID, count: int) -> None:
    await handle(sessionmaker, user_registered(user_id, email=f"{user_id.hex[:8]}@example.com"))
    for i in range(count):
        await handle(sessionmaker, experiment_completed(user_id, name=f"run {i}"))


async def test_email_log_lists_only_the_callers_emails(client, sessionmaker) -> None:
    me, other = uuid.uuid4(), uuid.uuid4()
    await queue_emails(sessionmaker, me, 2)
    await queue_emails(sessionmaker, other, 1)

    response = await client.get("/api/v1/notifications/emails", headers=identity_headers(me))

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["next_cursor"] is None
    assert [item["subject"] for item in body["items"]] == [
        'Experiment "run 1" completed',
        'Experiment "run 0" completed',
    ]
    assert {item["to_address"] for item in body["items"]} == {f"{me.hex[:8]}@example.com"}
    assert {item["status"] for item in body["items"]} == {"queued"}


async def test_email_log_pages_with_a_cursor(client, sessionmaker) -> None:
    me = uuid.uuid4()
    await queue_emails(sessionmaker, me, 3)
    headers = identity_headers(me)

    first = (
        await client.get("/api/v1/notifications/emails", params={"limit": 2}, headers=headers)
    ).json()
    assert len(first["items"]) == 2
    assert first["next_cursor"]
    second = (
        await client.get(
            "/api/v1/notifications/emails",
            params={"limit": 2, "cursor": first["next_cursor"]},
            headers=headers,
        )
    ).json()

    assert second["next_cursor"] is None
    subjects = [i["subject"] for i in first["items"] + second["items"]]
    assert subjects == [f'Experiment "run {i}" completed' for i in (2, 1, 0)]


async def test_email_log_rejects_bad_input_with_problem_json(client) -> None:
    headers = identity_headers(uuid.uuid4())
    bad_cursor = await client.get(
        "/api/v1/notifications/emails", params={"cursor": "not-a-cursor"}, headers=headers
    )
    assert bad_cursor.status_code == 400
    assert bad_cursor.headers["content-type"] == "application/problem+json"
    too_many = await client.get(
        "/api/v1/notifications/emails", params={"limit": 501}, headers=headers
    )
    assert too_many.status_code == 422
    anonymous = await client.get("/api/v1/notifications/emails")
    assert anonymous.status_code == 401
