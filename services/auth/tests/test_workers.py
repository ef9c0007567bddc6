from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from runyard.auth.context import AuthContext
from runyard.auth.security import SigningKey
from runyard.auth.workers import purge_once
from runyard.shared.db import create_engine, create_sessionmaker
from services.auth.tests.auth_helpers import FakeClock, execute, fetch, register, tokens_for


async def test_purge_drops_stale_lockout_rows_and_expired_tokens_and_links(
    client, settings, clock: FakeClock, db
) -> None:
    await register(client, "ada")
    tokens = await tokens_for(client, "ada")
    renewed = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert renewed.status_code == 200
    now = clock.now()
    await execute(
        db,
        "INSERT INTO auth.unknown_login_failures (login_key, failures, last_failure_at) "
        "VALUES ('stale', 3, $1), ('fresh', 3, $2)",
        now - timedelta(hours=13),
        now - timedelta(hours=1),
    )
    await execute(
        db, "UPDATE auth.rotated_refresh_tokens SET expires_at = $1", now - timedelta(seconds=1)
    )
    await execute(
        db, "UPDATE auth.email_verifications SET expires_at = $1", now - timedelta(seconds=1)
    )

    engine = create_engine(db.url, pool_size=1)
    try:
        ctx = AuthContext.build(
            settings,
            clock=clock,
            signing_key=SigningKey.from_private_key(Ed25519PrivateKey.generate()),
        )
        runtime: Any = SimpleNamespace(
            context=ctx, sessionmaker=create_sessionmaker(engine, schema="auth")
        )
        assert await purge_once(runtime) == (1, 1, 1)
    finally:
        await engine.dispose()
    left = await fetch(db, "SELECT login_key FROM auth.unknown_login_failures")
    assert [r["login_key"] for r in left] == ["fresh"]
    assert await fetch(db, "SELECT token_hash FROM auth.rotated_refresh_tokens") == []
    assert await fetch(db, "SELECT id FROM auth.email_verifications") == []
