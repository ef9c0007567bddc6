"""The model registry's events (``model.registered``, ``model_version.*``) like any other
event: a new champion emailed at once (over real SMTP) with the move as the subject and the
lineage in the facts, an in-app entry per event, a new version in the daily digest, per-type
preferences, and the quieter events only in the inbox."""

from __future__ import annotations

import uuid

from runyard.notifications import preferences
from runyard.notifications.workers import send_due_emails
from runyard.shared.contracts.models import (
    ModelRegistered,
    ModelVersionAliasRemoved,
    ModelVersionAliasSet,
    ModelVersionArchived,
    ModelVersionCreated,
)
from runyard.shared.events import CloudEvent
from runyard.shared.testing.events import user_registered
from services.notifications.tests.notifications_helpers import (
    digest_rows,
    email_rows,
    event_of,
    handle,
    in_app_rows,
)

MODEL_ID = uuid.UUID("5e1f0a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b")
EXPERIMENT_ID = uuid.UUID("0b7c1e5a-2d4f-4a6b-8c9d-1e2f3a4b5c6d")
CHAMPION = "champion of pump-cnn moved from v6 to v7 (val_accuracy 0.962 from experiment <run 7>)"


def version_fields(owner: uuid.UUID) -> dict:
    return {
        "model_id": MODEL_ID,
        "model_name": "pump-cnn",
        "owner_id": owner,
        "model_version": 7,
        "version_id": uuid.uuid4(),
        "experiment_id": EXPERIMENT_ID,
        "experiment_name": "<run 7>",
        "metric_name": "val_accuracy",
        "metric_value": 0.962,
    }


def alias_set(owner: uuid.UUID) -> CloudEvent:
    return event_of(
        ModelVersionAliasSet(**version_fields(owner), alias="champion", previous_version=6),
        subject=MODEL_ID,
    )


async def test_a_new_champion_is_emailed_at_once_and_in_the_inbox(
    sessionmaker, settings, mailer, smtp_sink
) -> None:
    owner = uuid.uuid4()
    await handle(sessionmaker, user_registered(owner, timezone="Europe/Berlin"))
    event = alias_set(owner)
    await handle(sessionmaker, event)
    await handle(sessionmaker, event)  # redelivered: nothing twice
    assert await send_due_emails(sessionmaker, settings=settings, mailer=mailer) == 1

    [mail] = smtp_sink.messages()
    assert mail["Subject"] == CHAMPION
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    assert f"in your model registry: {CHAMPION}." in text
    assert "Previous version:  v6" in text and "Metric:            val_accuracy 0.962" in text
    assert f"Experiment ID:     {EXPERIMENT_ID}" in text
    assert "experiment &lt;run 7&gt;" in html and "<run 7>" not in html
    assert [(r.event_type, r.title, r.body) for r in await in_app_rows(sessionmaker)] == [
        ("model_version.alias_set", "Model alias moved", CHAMPION)
    ]


async def test_a_new_version_goes_to_the_daily_digest_and_follows_preferences(
    sessionmaker, settings, mailer, smtp_sink
) -> None:
    owner = uuid.uuid4()
    await handle(sessionmaker, user_registered(owner))
    created = ModelVersionCreated(
        **version_fields(owner), artifact_path="model", status="ready", size=10, sha256="ab" * 32
    )
    await handle(sessionmaker, event_of(created, subject=MODEL_ID))
    assert await email_rows(sessionmaker) == []
    assert [(r.event_type, r.frequency) for r in await digest_rows(sessionmaker)] == [
        ("model_version.created", "daily")
    ]
    assert created.summary() == (
        "pump-cnn v7 registered (val_accuracy 0.962 from experiment <run 7>)"
    )
    # an alias move switched to the daily digest by the user's preference
    async with sessionmaker() as session, session.begin():
        await preferences.update_preference(
            session,
            user_id=owner,
            event_type="model_version.alias_set",
            changes={"email_frequency": "daily"},
        )
    await handle(sessionmaker, alias_set(owner))
    assert await email_rows(sessionmaker) == []
    assert sorted(r.event_type for r in await digest_rows(sessionmaker)) == [
        "model_version.alias_set",
        "model_version.created",
    ]


async def test_quiet_registry_events_go_to_the_inbox_only(
    sessionmaker, settings, mailer, smtp_sink
) -> None:
    owner = uuid.uuid4()
    await handle(sessionmaker, user_registered(owner))
    fields = version_fields(owner)
    for payload in (
        ModelRegistered(model_id=MODEL_ID, model_name="pump-cnn", owner_id=owner),
        ModelVersionAliasRemoved(**fields, alias="challenger"),
        ModelVersionArchived(**fields),
    ):
        await handle(sessionmaker, event_of(payload, subject=MODEL_ID))
    assert await send_due_emails(sessionmaker, settings=settings, mailer=mailer) == 0
    assert smtp_sink.messages() == []
    assert sorted((r.event_type, r.body) for r in await in_app_rows(sessionmaker)) == [
        ("model.registered", 'Model "pump-cnn" registered'),
        ("model_version.alias_removed", "challenger of pump-cnn removed (it was v7)"),
        ("model_version.archived", "pump-cnn v7 archived"),
    ]
