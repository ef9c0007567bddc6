"""The model registry's pages on their own: they send a signed-out browser to sign in, refuse a
POST without the session's token before asking the API, draw a version's charts from one read
of the stats series (an HTTP server in the API's place), and an alias moved anywhere reaches its owner's open pages from the real broker."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiokafka import AIOKafkaProducer

from runyard.console import live
from runyard.console.config import Settings
from runyard.console.main import create_app
from runyard.console.pages.models import SERIES_BUCKETS, iso, version_body
from runyard.console.session import SESSION_COOKIE
from runyard.shared.contracts.models import ModelVersionAliasSet
from runyard.shared.events import make_event
from runyard.shared.runtime import supervise
from runyard.shared.testing import running_app
from services.console.tests.conftest import stand_in_api
from services.console.tests.test_pages import sealed_session

MODEL = "00000000-0000-0000-0000-000000000001"
NEWEST = "00000000-0000-0000-0000-0000000000a1"
OLDER = "00000000-0000-0000-0000-0000000000b2"


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


SERIES = {
    "from": "2026-12-05T12:00:00Z",
    "to": "2026-12-06T12:00:00Z",
    "interval": 7200,
    "grain": 3600,
    "buckets": [
        {
            "start": iso(datetime(2026, 12, 5, 12, tzinfo=UTC) + timedelta(hours=2 * i)),
            "end": iso(datetime(2026, 12, 5, 14, tzinfo=UTC) + timedelta(hours=2 * i)),
            "count": 10 * i,
            "errors": i,
            "error_rate": 0.1 if i else None,
            "latency_ms": {
                "p50": float(i) if i else None,
                "p95": 2.0 * i if i else None,
                "p99": 3.0 * i if i else None,
                "mean": float(i) if i else None,
            },
        }
        for i in range(12)
    ],
}
STATS = {
    "from": "2026-12-05T12:00:00Z",
    "to": "2026-12-06T12:00:00Z",
    "count": 660,
    "errors": 66,
    "error_rate": 0.1,
    "latency_ms": {"p50": 6.0, "p95": 11.0, "p99": 11.0, "mean": 7.0, "exact": True},
    "confidence": {
        "buckets": [{"lower": i / 10, "upper": (i + 1) / 10, "count": i} for i in range(10)],
        "null_count": 0,
    },
    "drift": {
        "psi": None,
        "threshold": 0.2,
        "drifted": False,
        "baseline_from": None,
        "baseline_to": None,
        "baseline_count": 0,
    },
}


LOGGED = f"/api/v1/models/{MODEL}/versions/2"


@pytest.fixture
def api() -> Iterator[tuple[str, list[str]]]:
    """A small HTTP server in the API's place answering the version page's reads (recording
    each request's path and query)."""
    asked: list[str] = []
    version_path = f"/api/v1/models/{MODEL}/versions/1"
    answers = {
        f"/api/v1/models/{MODEL}": {"id": MODEL, "name": "pump-cnn"},
        version_path: {
            "version": 1,
            "status": "ready",
            "aliases": [],
            "artifact_path": "model/",
            "created_at": "2026-12-01T00:00:00Z",
            "size": 1024,
            "file_count": 1,
            "sha256": "ab" * 32,
            "description": None,
            "archived_at": None,
            "status_message": None,
            "experiment_id": None,
            "metric_name": None,
            "input_schema": None,
            "output_schema": None,
        },
        f"{version_path}/predictions/stats": STATS,
        f"{version_path}/predictions/stats/series": SERIES,
        f"{version_path}/predictions": {"items": [], "next_cursor": None},
        f"{version_path}/files": [
            {"path": "MLmodel", "size": 11, "sha256": "cd" * 32, "content_type": "text/plain"},
            {
                "path": "data/model.pkl",
                "size": 5,
                "sha256": "ef" * 32,
                "content_type": "application/octet-stream",
            },
        ],
        f"{version_path}/files/data/model.pkl": b"<html>",
        f"{LOGGED}/files": [],
        # an MLflow logged model made outside a run: no experiment, the model's own files
        f"{LOGGED}/predictions/stats": STATS,
        f"{LOGGED}/predictions/stats/series": SERIES,
        f"{LOGGED}/predictions": {"items": [], "next_cursor": None},
        "/api/v1/notifications/inbox/unread-count": {"unread_count": 0},
        "/api/v1/models": {"items": [], "next_cursor": None},
        "/api/v1/experiments": {
            "items": [{"id": NEWEST, "name": "newest run", "status": "running"}],
            "next_cursor": "more",
        },
        f"/api/v1/experiments/{OLDER}": {"id": OLDER, "name": "older run", "status": "completed"},
    }

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            asked.append(self.path)
            answer = answers.get(urlsplit(self.path).path)
            raw = isinstance(answer, bytes)
            data = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
            self.send_response(200 if answer is not None else 404)
            self.send_header("content-type", "text/html" if raw else "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    answers[LOGGED] = {
        **answers[version_path],
        "version": 2,
        "artifact_path": "",
        "logged_model_id": "m-0123456789abcdef0123456789abcdef",
    }
    with stand_in_api(Handler) as url:
        yield url, asked


async def version_page(api_url: str, kafka_bootstrap: str, number: int, **params: str) -> Any:
    """The version page of ``MODEL`` as a signed-in browser gets it from the stand-in API."""
    settings = Settings(
        environment="test",
        api_url=api_url,
        kafka_bootstrap_servers=kafka_bootstrap,
        live_enabled=False,
    )
    async with running_app(create_app(settings)) as client:
        client.cookies.set(SESSION_COOKIE, sealed_session(settings))
        return await client.get(f"/models/{MODEL}/versions/{number}", params=params)


async def test_the_version_page_draws_the_series_read_in_one_request(
    kafka_bootstrap: str, api: tuple[str, list[str]]
) -> None:
    url, asked = api
    response = await version_page(url, kafka_bootstrap, 1, window="24h")
    assert response.status_code == 200, response.text
    series_reads = [a for a in asked if "/stats/series" in a]
    stats_reads = [a for a in asked if urlsplit(a).path.endswith("/stats")]
    assert len(series_reads) == 1 and len(stats_reads) == 1  # no longer one read per bucket
    query = parse_qs(urlsplit(series_reads[0]).query)
    assert query["interval"] == [str(24 * 3600 // SERIES_BUCKETS)]
    start, end = (datetime.fromisoformat(query[k][0]) for k in ("from", "to"))
    assert end - start == timedelta(days=1)
    chart = json.loads(
        response.text.split('<script type="application/json" id="chart-data">')[1].split(
            "</script>"
        )[0]
    )
    buckets = SERIES["buckets"]
    assert chart["series"] == {
        "t": [int(datetime.fromisoformat(b["end"]).timestamp()) for b in buckets],
        "count": [b["count"] for b in buckets],
        "error_rate": [b["error_rate"] for b in buckets],
        "p50": [b["latency_ms"]["p50"] for b in buckets],
        "p95": [b["latency_ms"]["p95"] for b in buckets],
        "p99": [b["latency_ms"]["p99"] for b in buckets],
    }
    assert chart["histogram"] == STATS["confidence"]["buckets"]
    assert iso(datetime(2026, 12, 6, 12, 0, tzinfo=UTC)) == "2026-12-06T12:00:00Z"


async def test_a_version_of_a_logged_model_names_the_model_as_its_lineage(
    kafka_bootstrap: str, api: tuple[str, list[str]]
) -> None:
    url, _asked = api
    response = await version_page(url, kafka_bootstrap, 2)
    assert response.status_code == 200, response.text
    lineage = response.text.split('id="lineage">')[1].split("</span>")[0]
    assert lineage == "MLflow logged model <code>m-0123456789abcdef0123456789abcdef</code>"


async def test_the_register_form_offers_the_linked_experiment_older_than_the_newest(
    kafka_bootstrap: str, api: tuple[str, list[str]]
) -> None:
    """An artifact's "register" link names its experiment; it is offered and selected even
    when it is not among the newest 100 the form lists."""
    url, asked = api
    settings = Settings(
        environment="test", api_url=url, kafka_bootstrap_servers=kafka_bootstrap, live_enabled=False
    )
    async with running_app(create_app(settings)) as client:
        client.cookies.set(SESSION_COOKIE, sealed_session(settings))
        linked = await client.get(
            "/models", params={"experiment_id": OLDER, "artifact_path": "model/"}
        )
        unknown = await client.get("/models", params={"experiment_id": "not-a-run"})
    assert linked.status_code == 200, linked.text
    assert f'<option value="{OLDER}" selected>older run (completed)</option>' in linked.text
    assert f'<option value="{NEWEST}">newest run (running)</option>' in linked.text
    assert f"/api/v1/experiments/{OLDER}" in asked
    assert unknown.status_code == 200  # an id the API does not know: just not offered
    assert "not-a-run" not in unknown.text.split("<select", 1)[1].split("</select>", 1)[0]


async def test_the_version_page_lists_its_files_and_downloads_them_through_the_console(
    kafka_bootstrap: str, api: tuple[str, list[str]]
) -> None:
    """The files the API lists, each a download streamed through the console as an attachment
    (an uploaded HTML file is never shown as this site); a path the version does not hold is
    refused before anything is fetched."""
    url, asked = api
    response = await version_page(url, kafka_bootstrap, 1)
    assert response.status_code == 200, response.text
    table = response.text.split('id="version-files">')[1].split("</table>")[0]
    raw = f"/models/{MODEL}/versions/1/files/raw?path="
    assert f'href="{raw}MLmodel" download>MLmodel</a>' in table
    assert f'href="{raw}data/model.pkl" download>data/model.pkl</a>' in table
    logged = await version_page(url, kafka_bootstrap, 2)
    assert 'id="no-files">No files.' in logged.text

    settings = Settings(
        environment="test", api_url=url, kafka_bootstrap_servers=kafka_bootstrap, live_enabled=False
    )
    async with running_app(create_app(settings)) as client:
        client.cookies.set(SESSION_COOKIE, sealed_session(settings))
        got = await client.get(raw.split("?")[0], params={"path": "data/model.pkl"})
        asked.clear()
        missing = await client.get(raw.split("?")[0], params={"path": "../secrets"})
    assert (got.status_code, got.content) == (200, b"<html>")
    assert got.headers["content-type"] == "application/octet-stream"
    assert got.headers["content-disposition"] == "attachment; filename*=UTF-8''model.pkl"
    assert missing.status_code == 404
    assert all(not a.split("?")[0].endswith("secrets") for a in asked)


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
