"""The model registry's pages on their own: they send a signed-out browser to sign in, refuse a
POST without the session's token before asking the API, cut a window into the chart's buckets,
and an alias moved anywhere reaches its owner's open pages from the real broker."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaProducer

from runyard.console import live
from runyard.console.config import Settings
from runyard.console.pages.models import SERIES_BUCKETS, iso, version_body, windows
from runyard.console.session import SESSION_COOKIE
from runyard.shared.contracts.models import ModelVersionAliasSet
from runyard.shared.events import make_event
from runyard.shared.runtime import supervise
from services.console.tests.test_pages import sealed_session

MODEL = "00000000-0000-0000-0000-000000000001"


@pytest.mark.parametrize(
    "path", ["/models", "/models?q=pump", f"/models/{MODEL}", f"/models/{MODEL}/versions/3"]
)
async def test_a_signed_out_browser_is_sent_to_sign_in_and_back(client, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?next=")


@pytest.mark.parametrize(
    "path",
    [
        "/models",
        f"/models/{MODEL}/aliases",
        f"/models/{MODEL}/aliases/champion/delete",
        f"/models/{MODEL}/versions",
        f"/models/{MODEL}/versions/2/archive",
        f"/models/{MODEL}/versions/2/delete",
    ],
)
async def test_a_post_without_the_sessions_token_is_refused_before_the_api_is_asked(
    client, settings, path: str
) -> None:
    """Nothing listens on the API URL: a refusal that asked the API would be a 502."""
    client.cookies.set(SESSION_COOKIE, sealed_session(settings))
    data = {
        "csrf_token": "forged",
        "name": "pump-cnn",
        "alias": "champion",
        "version": "2",
        "experiment_id": MODEL,
        "artifact_path": "model/",
    }
    response = await client.post(path, data=data)
    assert response.status_code == 403
    assert "Form expired" in response.text


def test_the_window_is_cut_into_consecutive_buckets_that_end_now() -> None:
    end = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    spans = windows(end, timedelta(days=1), SERIES_BUCKETS)
    assert len(spans) == SERIES_BUCKETS
    assert spans[0][0] == end - timedelta(days=1) and spans[-1][1] == end
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
    assert iso(end) == "2026-12-06T12:00:00Z"


def test_a_register_form_becomes_the_apis_version_body() -> None:
    assert version_body(f" {MODEL} ", " model/weights.pt ", "  ") == {
        "experiment_id": MODEL,
        "artifact_path": "model/weights.pt",
    }
    assert version_body(MODEL, "m", "first")["description"] == "first"


def alias_set(owner: uuid.UUID, model_id: uuid.UUID) -> bytes:
    payload = ModelVersionAliasSet(
        model_id=model_id,
        model_name="pump-cnn",
        owner_id=owner,
        owner_email="ada@example.test",
        model_version=7,
        version_id=uuid.uuid4(),
        alias="champion",
        previous_version=6,
    )
    return make_event(payload, source="/runyard/experiments", subject=str(model_id)).to_json()


async def test_an_alias_move_reaches_its_owners_open_pages_only(kafka_bootstrap: str) -> None:
    settings = Settings(environment="test", kafka_bootstrap_servers=kafka_bootstrap)
    hub = live.Hub(queue_size=10)
    ada, eve, model_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    adas, eves = hub.subscribe(str(ada)), hub.subscribe(str(eve))
    consumer = asyncio.create_task(supervise("live", lambda: live.consume(settings, hub)))
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        while not hub.consuming:
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # the partitions are assigned and read from their end
        await producer.send_and_wait("model_version.alias_set", alias_set(ada, model_id))
        frame = await asyncio.wait_for(adas.get(), timeout=20)
    finally:
        await producer.stop()
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)

    assert frame.startswith("event: model_version.alias_set\n")
    assert f'"model_id":"{model_id}"' in frame
    assert '"alias":"champion"' in frame and '"model_version":7' in frame
    assert '"previous_version":6' in frame
    assert "ada@example.test" not in frame
    assert eves.empty()
