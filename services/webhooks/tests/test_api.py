from __future__ import annotations

import base64
import uuid
from typing import Any

import asyncpg
import pytest

from runyard.shared.db import asyncpg_dsn
from runyard.shared.testing import ServiceDatabase, identity_headers, running_app
from runyard.webhooks.config import Settings
from runyard.webhooks.main import create_app
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


async def test_another_users_webhook_is_404_everywhere(client) -> None:
    webhook_id = (await create(client, uuid.uuid4(), "http://127.0.0.1:9/hook")).json()["id"]
    stranger = identity_headers(uuid.uuid4())
    for method, path in (
        ("GET", f"/api/v1/webhooks/{webhook_id}"),
        ("GET", f"/api/v1/webhooks/{webhook_id}/deliveries"),
        ("DELETE", f"/api/v1/webhooks/{webhook_id}"),
    ):
        answer = await client.request(method, path, headers=stranger)
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


async def test_viewers_cannot_create_webhooks(client) -> None:
    answer = await client.post(
        "/api/v1/webhooks",
        json={**CONFIG, "url": "http://127.0.0.1:9/hook"},
        headers=identity_headers(uuid.uuid4(), role="viewer"),
    )
    assert answer.status_code == 403


@pytest.fixture
async def strict_client(settings: Settings) -> Any:
    strict = settings.model_copy(update={"allow_private_targets": False})
    async with running_app(create_app(strict)) as c:
        yield c


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/hook",
        "https://127.0.0.1/hook",
        "https://localhost:8443/hook",
        "https://10.1.2.3/hook",
        "https://[::1]/hook",
        "https://[::ffff:192.168.0.1]/hook",
        "https://169.254.169.254/latest/meta-data",
    ],
)
async def test_without_private_targets_only_https_to_public_hosts_is_accepted(
    strict_client, db, url
) -> None:
    answer = await create(strict_client, uuid.uuid4(), url)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["errors"][0]["loc"] == ["body", "url"]
    assert await stored_configurations(db) == []


async def test_without_private_targets_a_public_https_address_is_accepted(strict_client) -> None:
    answer = await create(strict_client, uuid.uuid4(), "https://93.184.215.14/hook")
    assert answer.status_code == 201, answer.text
