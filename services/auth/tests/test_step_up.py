"""Step-up authentication, written as the attack: someone holds a user's access token (a
15-minute bearer copied from a log, a browser, a proxy) and nothing else. Each change that would
let them keep the account (a new API key, 2FA on with their own app, 2FA off, new backup codes,
a new email address) is refused with 403 problem+json and changes nothing."""

from __future__ import annotations

from runyard.auth import totp
from services.auth.tests.auth_helpers import (
    API_KEYS,
    ME,
    PASSWORD,
    REVOKE_ALL,
    FakeClock,
    as_user,
    create_key,
    fetch,
    outbox_events,
    refresh,
    register,
    session_of,
    tokens_for,
    verify_key,
)

SETUP = "/api/v1/auth/2fa/setup"
ENABLE = "/api/v1/auth/2fa/enable"
DISABLE = "/api/v1/auth/2fa/disable"
BACKUP_CODES = "/api/v1/auth/2fa/backup-codes"


def code_now(secret: str, clock: FakeClock, offset_steps: int = 0) -> str:
    return totp.code_at_step(secret, totp.step_at(clock.now()) + offset_steps)


def assert_step_up_refused(response, *fields: str) -> None:
    assert response.status_code == 403, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "reauthentication_required"
    assert [e["loc"] for e in body["errors"]] == [["body", f] for f in fields]


async def two_factor_on(client, user, clock: FakeClock) -> str:
    secret = (await client.post(SETUP, headers=as_user(user))).json()["secret"]
    enabled = await client.post(
        ENABLE,
        json={"code": code_now(secret, clock), "current_password": PASSWORD},
        headers=as_user(user),
    )
    assert enabled.status_code == 200, enabled.text
    clock.advance(30)  # the code that enabled it is used up
    return secret


async def test_a_stolen_access_token_alone_cannot_create_an_api_key(client, db) -> None:
    user = await register(client, "ada")
    stolen = as_user(user, tokens=await tokens_for(client, "ada"))
    body = {"name": "exfil", "scopes": ["experiments:read", "experiments:write"]}

    bare = await client.post(API_KEYS, json=body, headers=stolen)
    assert_step_up_refused(bare, "current_password")
    guessed = await client.post(
        API_KEYS, json={**body, "current_password": "hunter2 hunter2"}, headers=stolen
    )
    assert guessed.status_code == 403
    assert guessed.headers["content-type"] == "application/problem+json"
    code_without_2fa = await client.post(API_KEYS, json={**body, "code": "123456"}, headers=stolen)
    assert_step_up_refused(code_without_2fa, "current_password")

    assert await fetch(db, "SELECT id FROM auth.api_keys") == []
    assert await outbox_events(db, "api_key.created") == []
    [row] = await fetch(db, "SELECT failed_login_attempts FROM auth.users")
    assert row["failed_login_attempts"] == 1  # the guess counts like a failed login
    assert (await create_key(client, user)).status_code == 201


async def test_a_stolen_access_token_alone_cannot_turn_on_2fa_with_the_attackers_app(
    client, clock: FakeClock, db
) -> None:
    user = await register(client, "ada")
    stolen = as_user(user, tokens=await tokens_for(client, "ada"))
    secret = (await client.post(SETUP, headers=stolen)).json()["secret"]

    response = await client.post(ENABLE, json={"code": code_now(secret, clock)}, headers=stolen)

    assert_step_up_refused(response, "current_password")
    [row] = await fetch(db, "SELECT totp_enabled, totp_last_used_step FROM auth.users")
    assert (row["totp_enabled"], row["totp_last_used_step"]) == (False, None)
    assert await fetch(db, "SELECT id FROM auth.backup_codes") == []
    assert await outbox_events(db, "two_factor.enabled") == []


async def test_a_stolen_access_token_alone_cannot_turn_2fa_off_or_take_new_backup_codes(
    client, clock: FakeClock, db
) -> None:
    user = await register(client, "ada")
    await two_factor_on(client, user, clock)
    stolen = as_user(user)
    codes_before = await fetch(db, "SELECT code_hash FROM auth.backup_codes ORDER BY code_hash")

    for path in (DISABLE, BACKUP_CODES):
        assert_step_up_refused(await client.post(path, json={}, headers=stolen), "code")
        # the password (phished, say) is not enough for these: they need the second factor
        with_password = await client.post(path, json={"current_password": PASSWORD}, headers=stolen)
        assert with_password.status_code == 422
        guessed = await client.post(path, json={"code": "000000"}, headers=stolen)
        assert guessed.status_code == 400

    [row] = await fetch(db, "SELECT totp_enabled, totp_secret IS NOT NULL AS kept FROM auth.users")
    assert (row["totp_enabled"], row["kept"]) == (True, True)
    codes_after = await fetch(db, "SELECT code_hash FROM auth.backup_codes ORDER BY code_hash")
    assert codes_after == codes_before
    assert await outbox_events(db, "two_factor.disabled") == []


async def test_a_stolen_access_token_alone_cannot_move_the_account_to_another_address(
    client, db
) -> None:
    user = await register(client, "ada")
    stolen = as_user(user, tokens=await tokens_for(client, "ada"))

    response = await client.patch(ME, json={"email": "mallory@evil.example"}, headers=stolen)

    assert_step_up_refused(response, "current_password")
    [row] = await fetch(db, "SELECT email FROM auth.users")
    assert row["email"] == "ada@example.org"
    assert await fetch(db, "SELECT id FROM auth.email_verifications WHERE purpose = 'change'") == []
    changes = [
        e
        for e in await outbox_events(db, "email_verification.requested")
        if e["data"]["purpose"] == "change"
    ]
    assert changes == []


async def test_with_2fa_on_a_code_confirms_a_new_api_key_and_a_wrong_one_does_not(
    client, clock: FakeClock, db
) -> None:
    user = await register(client, "ada")
    secret = await two_factor_on(client, user, clock)

    without = await create_key(client, user, current_password=None)
    assert_step_up_refused(without, "current_password", "code")
    wrong = await create_key(client, user, current_password=None, code="000000")
    assert (wrong.status_code, wrong.json()["detail"]) == (403, "code is not valid.")
    assert await fetch(db, "SELECT id FROM auth.api_keys") == []

    right = await create_key(client, user, current_password=None, code=code_now(secret, clock))
    assert right.status_code == 201, right.text
    reused = await create_key(client, user, current_password=None, code=code_now(secret, clock))
    assert reused.status_code == 403  # a TOTP code works once


async def test_log_out_everywhere_ends_the_other_sessions_and_on_request_every_api_key(
    client, db
) -> None:
    user = await register(client, "ada")
    here = await tokens_for(client, "ada")
    elsewhere = await tokens_for(client, "ada")
    key = (await create_key(client, user)).json()["key"]

    sessions_only = await client.post(REVOKE_ALL, headers=as_user(user, tokens=here))
    assert sessions_only.status_code == 200
    assert sessions_only.json() == {"sessions_revoked": 1, "api_keys_revoked": 0}
    assert (await refresh(client, elsewhere["refresh_token"])).status_code == 401
    assert (await verify_key(client, key)).status_code == 200

    everything = await client.post(
        REVOKE_ALL,
        json={"include_current": True, "revoke_api_keys": True},
        headers=as_user(user, tokens=here),
    )
    assert everything.json() == {"sessions_revoked": 1, "api_keys_revoked": 1}
    assert (await refresh(client, here["refresh_token"])).status_code == 401
    assert (await verify_key(client, key)).status_code == 401
    reasons = {e["data"]["reason"] for e in await outbox_events(db, "session.revoked")}
    assert reasons == {"logged_out_everywhere"}
    [revoked] = await outbox_events(db, "api_key.revoked")
    assert revoked["data"]["user_id"] == user["id"]
    ended = await fetch(db, "SELECT id FROM auth.session_logs WHERE is_active")
    assert ended == []
    assert session_of(here["access_token"])  # the token still decodes; the gateway refuses it


async def test_api_keys_cannot_log_out_everywhere(client, db) -> None:
    user = await register(client, "ada")
    await tokens_for(client, "ada")
    response = await client.post(REVOKE_ALL, headers=as_user(user, auth_method="api_key"))
    assert response.status_code == 403
    assert await fetch(db, "SELECT id FROM auth.session_logs WHERE NOT is_active") == []
