from __future__ import annotations

import base64
import uuid
from typing import Any

import asyncpg
import pytest

from runyard.shared.db import asyncpg_dsn
from runyard.shared.testing import ServiceDatabase, identity_headers
from runyard.webhooks.signing import SecretBox

CONFIG = {"name": "lab hook", "enabled_events": ["experiment.*"]}


async def create(client: Any, owner: uuid.UUID, url: str, **fields: Any) -> Any:
    return await client.post(
        "/api/v1/webhooks", json={**CONFIG, "url": url, **fields}, headers=identity_headers(owner)
    )


async def stored_configurations(db: ServiceDatabase) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(asyncpg_dsn(db.admin_url))
    try:
        return await conn.fetch("SELECT * FROM webhooks.webhook_configurations")
    finally:
        await conn.close()


async def test_creating_a_webhook_returns_a_whsec_secret_once(client) -> None:
    owner = uuid.uuid4()
    created = await create(client, owner, "http://127.0.0.1:9/hook", description="ci")
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["provider_type"] == "generic"
    assert body["enabled_events"] == ["experiment.*"]
    assert body["owner_id"] == str(owner)
    assert body["is_active"] is True
    assert body["secret"].startswith("whsec_")
    assert len(base64.b64decode(body["secret"].removeprefix("whsec_"))) == 32

    fetched = await client.get(f"/api/v1/webhooks/{body['id']}", headers=identity_headers(owner))
    assert fetched.status_code == 200
    assert fetched.json()["name"] == "lab hook"
    assert "secret" not in fetched.json()
    listed = await client.get("/api/v1/webhooks", headers=identity_headers(owner))
    assert listed.json()["next_cursor"] is None
    assert [w["id"] for w in listed.json()["items"]] == [body["id"]]
    assert "secret" not in listed.json()["items"][0]


async def test_the_secret_is_stored_encrypted(client, db, settings) -> None:
    secret = (await create(client, uuid.uuid4(), "http://127.0.0.1:9/hook")).json()["secret"]
    [row] = await stored_configurations(db)
    assert secret not in row["secret_encrypted"]
    assert SecretBox(settings.secret_encryption_key).decrypt(row["secret_encrypted"]) == secret


async def test_list_shows_only_the_callers_webhooks_and_pages_with_a_cursor(client) -> None:
    owner = uuid.uuid4()
    ids = [
        (await create(client, owner, f"http://127.0.0.1:9/hook/{i}")).json()["id"] for i in range(3)
    ]
    await create(client, uuid.uuid4(), "http://127.0.0.1:9/someone-else")
    first = (await client.get("/api/v1/webhooks?limit=2", headers=identity_headers(owner))).json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    second = (
        await client.get(
            f"/api/v1/webhooks?limit=2&cursor={first['next_cursor']}",
            headers=identity_headers(owner),
        )
    ).json()
    assert second["next_cursor"] is None
    assert sorted(w["id"] for w in first["items"] + second["items"]) == sorted(ids)


async def test_a_cursor_that_the_list_did_not_return_is_400_invalid_cursor(client) -> None:
    owner = uuid.uuid4()
    for i in range(2):
        await create(client, owner, f"http://127.0.0.1:9/hook/{i}")
    page = (await client.get("/api/v1/webhooks?limit=1", headers=identity_headers(owner))).json()
    webhook_id = page["items"][0]["id"]
    other_lists_cursor = page["next_cursor"]
    wrong = [("/api/v1/webhooks", "garbage")] + [
        (f"/api/v1/webhooks/{webhook_id}/{name}", cursor)
        for name in ("deliveries", "attempts")
        for cursor in ("garbage", other_lists_cursor)
    ]
    for path, cursor in wrong:
        answer = await client.get(path, params={"cursor": cursor}, headers=identity_headers(owner))
        assert answer.status_code == 400, (path, cursor)
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["title"] == "Invalid cursor"


async def test_another_users_webhook_is_404_everywhere(client) -> None:
    webhook_id = (await create(client, uuid.uuid4(), "http://127.0.0.1:9/hook")).json()["id"]
    stranger = identity_headers(uuid.uuid4())
    delivery = uuid.uuid4()
    for method, path in (
        ("GET", f"/api/v1/webhooks/{webhook_id}"),
        ("PATCH", f"/api/v1/webhooks/{webhook_id}"),
        ("GET", f"/api/v1/webhooks/{webhook_id}/deliveries"),
        ("GET", f"/api/v1/webhooks/{webhook_id}/deliveries/{delivery}"),
        ("POST", f"/api/v1/webhooks/{webhook_id}/deliveries/{delivery}/retry"),
        ("GET", f"/api/v1/webhooks/{webhook_id}/attempts"),
        ("POST", f"/api/v1/webhooks/{webhook_id}/rotate-secret"),
        ("POST", f"/api/v1/webhooks/{webhook_id}/enable"),
        ("POST", f"/api/v1/webhooks/{webhook_id}/test"),
        ("POST", f"/api/v1/webhooks/{webhook_id}/replay"),
        ("DELETE", f"/api/v1/webhooks/{webhook_id}"),
    ):
        body = {"since": "2026-01-01T00:00:00Z"} if path.endswith("/replay") else {}
        answer = await client.request(method, path, headers=stranger, json=body)
        assert answer.status_code == 404, (method, path)
        assert answer.headers["content-type"] == "application/problem+json"


async def test_deleting_a_webhook_removes_it(client, db) -> None:
    owner = uuid.uuid4()
    webhook_id = (await create(client, owner, "http://127.0.0.1:9/hook")).json()["id"]
    deleted = await client.delete(f"/api/v1/webhooks/{webhook_id}", headers=identity_headers(owner))
    assert deleted.status_code == 204
    gone = await client.get(f"/api/v1/webhooks/{webhook_id}", headers=identity_headers(owner))
    assert gone.status_code == 404
    assert await stored_configurations(db) == []


async def test_a_second_webhook_for_the_same_url_is_409(client, db) -> None:
    owner = uuid.uuid4()
    assert (await create(client, owner, "http://127.0.0.1:9/hook")).status_code == 201
    again = await create(client, owner, "http://127.0.0.1:9/hook")
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"
    assert len(await stored_configurations(db)) == 1


@pytest.mark.parametrize(
    "fields",
    [
        {"url": "ftp://127.0.0.1/hook"},
        {"url": "not a url"},
        {"provider_type": "discord"},
        {"enabled_events": []},
        {"enabled_events": ["experiment.complete"]},
        {"enabled_events": ["Experiment.Completed!"]},
        {"name": ""},
        {"settings": {"headers": {"Content-Type": "text/plain"}}},
        {"settings": {"headers": {"webhook-signature": "v1,forged"}}},
        {"settings": {"headers": {"X-Split": "a\r\nInjected: yes"}}},
        {"settings": {"headers": {"bad name": "x"}}},
        {"settings": {"rate_limit_per_second": 0}},
        {"settings": {"retries": 3}},
    ],
)
async def test_invalid_configuration_is_422_problem_and_stores_nothing(client, db, fields) -> None:
    body = {**CONFIG, "url": "http://127.0.0.1:9/hook", **fields}
    answer = await client.post(
        "/api/v1/webhooks", json=body, headers=identity_headers(uuid.uuid4())
    )
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["errors"]
    assert await stored_configurations(db) == []


async def test_viewers_cannot_create_or_change_webhooks(client) -> None:
    viewer = uuid.uuid4()
    answer = await client.post(
        "/api/v1/webhooks",
        json={**CONFIG, "url": "http://127.0.0.1:9/hook"},
        headers=identity_headers(viewer, role="viewer"),
    )
    assert answer.status_code == 403
    for path in ("rotate-secret", "enable", "test"):
        answer = await client.post(
            f"/api/v1/webhooks/{uuid.uuid4()}/{path}",
            headers=identity_headers(viewer, role="viewer"),
        )
        assert answer.status_code == 403, path


async def test_the_configuration_keeps_its_settings_and_shows_no_secret_material(client) -> None:
    owner = uuid.uuid4()
    created = await create(
        client,
        owner,
        "http://127.0.0.1:9/hook",
        provider_type="slack",
        settings={"headers": {"X-Team": "lab"}},
    )
    body = created.json()
    assert body["settings"] == {"headers": {"X-Team": "lab"}}
    fetched = (
        await client.get(f"/api/v1/webhooks/{body['id']}", headers=identity_headers(owner))
    ).json()
    assert not any("secret" in key and key != "previous_secret_expires_at" for key in fetched)
    assert fetched["previous_secret_expires_at"] is None
