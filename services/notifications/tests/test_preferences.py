"""Preferences per (user, event type): defaults, changes over the API, their effect on what
the service sends, and the ``notification_preference.updated`` event the webhooks service reads."""

from __future__ import annotations

import uuid

import pytest

from runyard.shared.contracts.notifications import NotificationPreferenceUpdated
from runyard.shared.events import CloudEvent
from runyard.shared.testing import identity_headers
from runyard.shared.testing.events import experiment_completed, user_registered
from services.notifications.tests.notifications_helpers import (
    digest_rows,
    email_rows,
    handle,
    in_app_rows,
    login_failed,
    outbox_events,
)

URL = "/api/v1/notifications/preferences"


async def test_preferences_list_every_notifying_type_with_its_defaults(client) -> None:
    response = await client.get(URL, headers=identity_headers(uuid.uuid4()))

    assert response.status_code == 200, response.text
    found = {p["event_type"]: p for p in response.json()["items"]}
    assert set(found) >= {
        "experiment.completed",
        "experiment.failed",
        "hpo_campaign.completed",
        "nas_campaign.completed",
        "dataset_generation.completed",
        "dataset_generation.failed",
        "dataset_import.completed",
        "dataset_import.failed",
        "login.failed",
        "account.locked",
        "webhook.endpoint_disabled",
    }
    assert all(p["is_default"] for p in found.values())
    assert found["experiment.completed"]["email_frequency"] == "immediate"
    assert found["dataset_import.completed"]["email_frequency"] == "daily"
    assert found["login.failed"]["critical"] is True
    assert found["experiment.completed"]["critical"] is False


async def test_changing_a_preference_stores_it_and_publishes_what_webhooks_reads(
    client, sessionmaker
) -> None:
    me = uuid.uuid4()
    response = await client.put(
        f"{URL}/experiment.completed",
        json={"slack_enabled": False, "email_frequency": "weekly"},
        headers=identity_headers(me),
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["slack_enabled"] is False
    assert body["webhook_enabled"] is True
    assert body["email_frequency"] == "weekly"
    assert body["is_default"] is False
    listed = (await client.get(URL, headers=identity_headers(me))).json()["items"]
    [stored] = [p for p in listed if p["event_type"] == "experiment.completed"]
    assert stored == body
    [event] = await outbox_events(sessionmaker)
    assert event.topic == "notification_preference.updated"
    assert event.key == str(me)
    # What the webhooks service's consumer reads from it.
    document = CloudEvent.model_validate(event.payload)
    payload = document.payload()
    assert isinstance(payload, NotificationPreferenceUpdated)
    assert (payload.user_id, payload.notification_event_type) == (me, "experiment.completed")
    assert (payload.slack_enabled, payload.webhook_enabled) == (False, True)
    assert payload.email_frequency == "weekly"


async def test_a_second_change_keeps_the_fields_it_leaves_out(client, sessionmaker) -> None:
    headers = identity_headers(uuid.uuid4())
    await client.put(f"{URL}/experiment.failed", json={"webhook_enabled": False}, headers=headers)
    second = await client.put(
        f"{URL}/experiment.failed", json={"in_app_enabled": False}, headers=headers
    )

    assert second.json()["webhook_enabled"] is False
    assert second.json()["in_app_enabled"] is False
    events = await outbox_events(sessionmaker)
    assert [e.payload["data"]["webhook_enabled"] for e in events] == [False, False]


@pytest.mark.parametrize(
    "change", [{"email_frequency": "never"}, {"email_enabled": False}, {"email_frequency": "daily"}]
)
async def test_security_alerts_cannot_be_switched_off_or_digested(
    client, sessionmaker, change
) -> None:
    headers = identity_headers(uuid.uuid4())
    response = await client.put(f"{URL}/login.failed", json=change, headers=headers)

    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert "security alert" in response.json()["detail"]
    assert await outbox_events(sessionmaker) == []
    listed = (await client.get(URL, headers=headers)).json()["items"]
    [alert] = [p for p in listed if p["event_type"] == "login.failed"]
    assert alert["is_default"] is True


async def test_security_alert_can_still_mute_its_slack_messages(client) -> None:
    response = await client.put(
        f"{URL}/account.locked",
        json={"slack_enabled": False},
        headers=identity_headers(uuid.uuid4()),
    )
    assert response.status_code == 200
    assert response.json()["email_frequency"] == "immediate"


async def test_bad_preference_input_is_rejected_with_problem_json(client, sessionmaker) -> None:
    headers = identity_headers(uuid.uuid4())
    unknown = await client.put(f"{URL}/no.such.type", json={}, headers=headers)
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/problem+json"
    bad_frequency = await client.put(
        f"{URL}/experiment.completed", json={"email_frequency": "monthly"}, headers=headers
    )
    assert bad_frequency.status_code == 422
    extra_field = await client.put(
        f"{URL}/experiment.completed", json={"sms_enabled": True}, headers=headers
    )
    assert extra_field.status_code == 422
    anonymous = await client.get(URL)
    assert anonymous.status_code == 401
    assert await outbox_events(sessionmaker) == []


async def test_email_frequency_never_stops_the_email_but_keeps_the_in_app_entry(
    client, sessionmaker
) -> None:
    me = uuid.uuid4()
    await handle(sessionmaker, user_registered(me))
    await client.put(
        f"{URL}/experiment.completed",
        json={"email_frequency": "never"},
        headers=identity_headers(me),
    )
    await handle(sessionmaker, experiment_completed(me))

    assert await email_rows(sessionmaker) == []
    [entry] = await in_app_rows(sessionmaker)
    assert entry.title == "Experiment completed"
    assert entry.body == 'Experiment "cnn baseline" completed after 10 epochs'


async def test_in_app_switched_off_stores_no_inbox_entry(client, sessionmaker) -> None:
    me = uuid.uuid4()
    await handle(sessionmaker, user_registered(me))
    await client.put(
        f"{URL}/experiment.completed",
        json={"in_app_enabled": False},
        headers=identity_headers(me),
    )
    await handle(sessionmaker, experiment_completed(me))

    assert await in_app_rows(sessionmaker) == []
    assert len(await email_rows(sessionmaker)) == 1


async def test_digest_frequency_queues_the_event_for_the_digest_instead_of_an_email(
    client, sessionmaker
) -> None:
    me = uuid.uuid4()
    await handle(sessionmaker, user_registered(me))
    await client.put(
        f"{URL}/experiment.completed",
        json={"email_frequency": "hourly"},
        headers=identity_headers(me),
    )
    await handle(sessionmaker, experiment_completed(me))

    assert await email_rows(sessionmaker) == []
    [item] = await digest_rows(sessionmaker)
    assert (item.user_id, item.frequency, item.included_in_digest) == (me, "hourly", False)


async def test_failed_login_is_emailed_even_for_a_user_who_never_chose(sessionmaker) -> None:
    me = uuid.uuid4()
    await handle(sessionmaker, user_registered(me))
    await handle(sessionmaker, login_failed(me))
    [email] = await email_rows(sessionmaker)
    assert email.status == "queued"
