"""Exactly-once batches (``Idempotency-Key``): a repeat stores nothing and answers like the
first, a key reused for another version or body is refused naming the header, a concurrent
duplicate waits for the first one and answers from it (or stores its rows if the first rolled
back), and the keys leave with the months the log no longer keeps."""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import UTC, datetime, timedelta

import asyncpg

from runyard.experiments.predictions import partitions
from runyard.shared.db import asyncpg_dsn
from services.experiments.tests.experiments_helpers import fetch
from services.experiments.tests.predictions.conftest import url


def body(n: int, tag: str = "a") -> bytes:
    return json.dumps(
        {"predictions": [{"input": {"i": i, "tag": tag}, "latency_ms": 1.0 + i} for i in range(n)]}
    ).encode()


async def stored(db, version) -> int:
    rows = await fetch(
        db,
        "SELECT count(*) AS n FROM experiments.predictions WHERE version_id = $1",
        version["version_id"],
    )
    return int(rows[0]["n"])


async def rolled_up(db, version) -> int:
    rows = await fetch(
        db,
        "SELECT coalesce(sum(n), 0) AS n FROM experiments.prediction_rollups "
        "WHERE version_id = $1 AND grain = 60",
        version["version_id"],
    )
    return int(rows[0]["n"])


def post(client, who, version, content: bytes, key: str | None):
    headers = {**who.headers, "content-type": "application/json"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post(url(version), content=content, headers=headers)


async def test_a_repeated_key_stores_nothing_and_answers_like_the_first(
    client, db, alice, new_version
) -> None:
    version = await new_version(alice.id)
    first = await post(client, alice, version, body(5), "log-1:0")
    assert first.status_code == 201, first.text
    assert first.json()["count"] == 5 and first.json()["replayed"] is False
    again = await post(client, alice, version, body(5), "log-1:0")
    assert again.status_code == 201, again.text
    assert again.json() == {**first.json(), "replayed": True}
    assert await stored(db, version) == 5
    assert await rolled_up(db, version) == 5
    # another key: stored again; no key: at least once, as before
    assert (await post(client, alice, version, body(5), "log-1:1")).json()["replayed"] is False
    assert (await post(client, alice, version, body(5), None)).status_code == 201
    assert await stored(db, version) == 15
    # one row per batch, holding its count and its body's digest
    rows = await fetch(
        db, "SELECT key, count, body_sha256 FROM experiments.prediction_batches ORDER BY key"
    )
    assert [(r["key"], r["count"]) for r in rows] == [("log-1:0", 5), ("log-1:1", 5)]
    assert bytes(rows[0]["body_sha256"]) == hashlib.sha256(body(5)).digest()


async def test_a_key_reused_for_another_body_or_version_is_refused_naming_it(
    client, db, alice, new_version
) -> None:
    v1 = await new_version(alice.id)
    v2 = await new_version(alice.id, number=2)
    assert (await post(client, alice, v1, body(3), "k")).status_code == 201
    for version, content, what in (
        (v1, body(4), "another body"),  # another size
        (v1, body(3, tag="b"), "another body"),  # the same size, other predictions
        (v2, body(3), "another model version"),
    ):
        refused = await post(client, alice, version, content, "k")
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        error = refused.json()["errors"][0]
        assert error["loc"] == ["header", "Idempotency-Key"]
        assert error["type"] == "idempotency_key_reused" and what in error["msg"]
    assert await stored(db, v1) == 3 and await stored(db, v2) == 0
    # a malformed key is refused by the header's own rules
    bad = await post(client, alice, v1, body(1), "has space")
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["loc"] == ["header", "Idempotency-Key"]


async def test_a_refused_batch_leaves_its_key_free(client, db, alice, new_version) -> None:
    version = await new_version(alice.id)
    invalid = json.dumps({"predictions": [{"input": 1, "latency_ms": -1}]}).encode()
    assert (await post(client, alice, version, invalid, "k")).status_code == 422
    assert await fetch(db, "SELECT 1 FROM experiments.prediction_batches") == []
    again = await post(client, alice, version, body(2), "k")
    assert again.status_code == 201 and again.json()["replayed"] is False
    assert await stored(db, version) == 2


async def test_concurrent_duplicates_store_one_copy(client, db, alice, new_version) -> None:
    version = await new_version(alice.id)
    answers = await asyncio.gather(
        *(post(client, alice, version, body(50), "same") for _ in range(6))
    )
    assert [a.status_code for a in answers] == [201] * 6, [a.text for a in answers]
    assert sorted(a.json()["replayed"] for a in answers) == [False] + [True] * 5
    assert {a.json()["count"] for a in answers} == {50}
    assert await stored(db, version) == 50
    assert await rolled_up(db, version) == 50


async def _waiting_on_a_lock(conn: asyncpg.Connection) -> None:
    while not await conn.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
        "AND query LIKE '%prediction_batches%'"
    ):
        await asyncio.sleep(0.02)


async def test_a_duplicate_waits_for_the_first_and_answers_from_it(
    client, db, alice, new_version
) -> None:
    """The first request's transaction is held open (a connection claims the key and does not
    commit yet): the second one waits on the key, then answers from the first when it commits,
    or stores its own rows when it rolls back."""
    version = await new_version(alice.id)
    content = body(4)
    conn = await asyncpg.connect(asyncpg_dsn(db.admin_url))
    try:
        for outcome in ("commit", "rollback"):
            key = f"held-{outcome}"
            tx = conn.transaction()
            await tx.start()
            await conn.execute(
                "INSERT INTO experiments.prediction_batches "
                "(owner_id, key, version_id, count, body_sha256) VALUES ($1, $2, $3, 4, $4)",
                alice.id,
                key,
                version["version_id"],
                hashlib.sha256(content).digest(),
            )
            second = asyncio.create_task(post(client, alice, version, content, key))
            watcher = await asyncpg.connect(asyncpg_dsn(db.admin_url))
            try:
                await asyncio.wait_for(_waiting_on_a_lock(watcher), 60)
            finally:
                await watcher.close()
            assert not second.done()
            await (tx.commit() if outcome == "commit" else tx.rollback())
            answer = await second
            assert answer.status_code == 201, answer.text
            assert answer.json()["count"] == 4
            assert answer.json()["replayed"] is (outcome == "commit")
            # committed: the held one "stored" (no rows of its own here), the second nothing
            assert await stored(db, version) == (0 if outcome == "commit" else 4)
    finally:
        await conn.close()


async def test_keys_leave_with_the_months_no_longer_kept(sessionmaker, db, alice) -> None:
    now = datetime.now(UTC)
    first_kept = partitions.month_start(partitions.oldest_kept(now, 2))
    conn = await asyncpg.connect(asyncpg_dsn(db.admin_url))
    try:
        for key, created in (("old", first_kept - timedelta(days=1)), ("kept", first_kept)):
            await conn.execute(
                "INSERT INTO experiments.prediction_batches "
                "(owner_id, key, version_id, count, body_sha256, created_at) "
                "VALUES ($1, $2, gen_random_uuid(), 1, '\\x00', $3)",
                alice.id,
                key,
                created,
            )
    finally:
        await conn.close()
    async with sessionmaker() as session, session.begin():
        await partitions.maintain(session, now=now, months_ahead=1, retention_months=2)
    rows = await fetch(db, "SELECT key FROM experiments.prediction_batches")
    assert [r["key"] for r in rows] == ["kept"]
