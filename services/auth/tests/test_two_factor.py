from __future__ import annotations

import re
from datetime import UTC, datetime
from urllib.parse import parse_qs, unquote, urlparse

import pyotp
import pytest

from runyard.auth import totp
from services.auth.tests.auth_helpers import (
    PASSWORD,
    REFRESH,
    FakeClock,
    as_user,
    fetch,
    login,
    outbox_events,
    register,
    tokens_for,
)

SETUP = "/api/v1/auth/2fa/setup"
ENABLE = "/api/v1/auth/2fa/enable"
DISABLE = "/api/v1/auth/2fa/disable"
BACKUP_CODES = "/api/v1/auth/2fa/backup-codes"

# RFC 6238 appendix B: the SHA-1 seed "12345678901234567890" (base32 below). The RFC lists
# 8-digit codes; 6-digit TOTP is the same HOTP value modulo 10^6 (RFC 4226 §5.3).
RFC6238_SECRET = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
RFC6238 = {59: "287082", 1111111109: "081804", 1234567890: "005924", 2000000000: "279037"}


def at(unix: int) -> datetime:
    return datetime.fromtimestamp(unix, UTC)


def test_codes_match_the_rfc_6238_test_vectors() -> None:
    for unix, code in RFC6238.items():
        assert totp.code_at_step(RFC6238_SECRET, totp.step_at(at(unix))) == code


def test_a_code_is_accepted_one_step_either_side_and_not_two() -> None:
    now = at(1111111109)
    step = totp.step_at(now)
    for offset in (-1, 0, 1):
        code = totp.code_at_step(RFC6238_SECRET, step + offset)
        assert (
            totp.matching_step(RFC6238_SECRET, code, now=now, last_used_step=None) == step + offset
        )
    for offset in (-2, 2):
        code = totp.code_at_step(RFC6238_SECRET, step + offset)
        assert totp.matching_step(RFC6238_SECRET, code, now=now, last_used_step=None) is None


def test_a_used_step_and_older_ones_are_refused() -> None:
    now = at(1111111109)
    step = totp.step_at(now)
    code = totp.code_at_step(RFC6238_SECRET, step)
    assert totp.matching_step(RFC6238_SECRET, code, now=now, last_used_step=step) is None
    previous = totp.code_at_step(RFC6238_SECRET, step - 1)
    assert totp.matching_step(RFC6238_SECRET, previous, now=now, last_used_step=step) is None
    following = totp.code_at_step(RFC6238_SECRET, step + 1)
    assert totp.matching_step(RFC6238_SECRET, following, now=now, last_used_step=step) == step + 1


def test_backup_codes_are_ten_distinct_codes_that_normalise() -> None:
    codes = totp.new_backup_codes()
    assert len(set(codes)) == 10
    assert all(re.fullmatch(r"[a-z2-7]{5}-[a-z2-7]{5}", c) for c in codes)
    assert totp.normalize_backup_code(codes[0].upper().replace("-", " ")) == codes[0].replace(
        "-", ""
    )
    assert totp.normalize_backup_code("123456") is None


def code_now(secret: str, clock: FakeClock, offset_steps: int = 0) -> str:
    return totp.code_at_step(secret, totp.step_at(clock.now()) + offset_steps)


async def enable_2fa(client, user, clock: FakeClock, tokens=None) -> tuple[str, list[str]]:
    setup = await client.post(SETUP, headers=as_user(user, tokens=tokens))
    assert setup.status_code == 200, setup.text
    secret = setup.json()["secret"]
    enabled = await client.post(
        ENABLE,
        json={"code": code_now(secret, clock), "current_password": PASSWORD},
        headers=as_user(user, tokens=tokens),
    )
    assert enabled.status_code == 200, enabled.text
    return secret, enabled.json()["backup_codes"]


async def test_setup_gives_a_secret_and_an_otpauth_uri_for_authenticator_apps(client, db) -> None:
    user = await register(client, "ada")
    response = await client.post(SETUP, headers=as_user(user))
    body = response.json()
    uri = urlparse(body["otpauth_uri"])
    assert (uri.scheme, uri.netloc) == ("otpauth", "totp")
    assert unquote(uri.path) == "/Runyard:ada@example.org"
    assert parse_qs(uri.query)["secret"] == [body["secret"]]
    assert parse_qs(uri.query)["issuer"] == ["Runyard"]
    assert pyotp.parse_uri(body["otpauth_uri"]).secret == body["secret"]
    [row] = await fetch(db, "SELECT totp_secret, totp_enabled FROM auth.users")
    assert row["totp_enabled"] is False
    assert body["secret"] not in row["totp_secret"]


async def test_enabling_returns_ten_backup_codes_stored_as_argon2_hashes(
    client, clock: FakeClock, db
) -> None:
    user = await register(client, "ada")
    _secret, codes = await enable_2fa(client, user, clock)
    assert len(set(codes)) == 10
    rows = await fetch(db, "SELECT code_hash, is_used FROM auth.backup_codes")
    assert len(rows) == 10
    assert all(r["code_hash"].startswith("$argon2id$") and not r["is_used"] for r in rows)
    assert not any(c.replace("-", "") in r["code_hash"] for c in codes for r in rows)
    [event] = await outbox_events(db, "two_factor.enabled")
    assert (event["key"], event["sequence"], event["data"]) == (
        user["id"],
        "2",
        {"user_id": user["id"]},
    )
    me = await client.get("/api/v1/auth/me", headers=as_user(user))
    assert me.json()["totp_enabled"] is True


async def test_enabling_with_a_wrong_code_is_400_and_leaves_2fa_off(client, db) -> None:
    user = await register(client, "ada")
    await client.post(SETUP, headers=as_user(user))
    response = await client.post(
        ENABLE, json={"code": "000000", "current_password": PASSWORD}, headers=as_user(user)
    )
    assert response.status_code == 400
    [row] = await fetch(db, "SELECT totp_enabled, failed_login_attempts FROM auth.users")
    assert (row["totp_enabled"], row["failed_login_attempts"]) == (False, 1)


async def test_enabling_without_setup_or_twice_is_409(client, clock: FakeClock) -> None:
    user = await register(client, "ada")
    assert (
        await client.post(
            ENABLE, json={"code": "123456", "current_password": PASSWORD}, headers=as_user(user)
        )
    ).status_code == 409
    await enable_2fa(client, user, clock)
    assert (await client.post(SETUP, headers=as_user(user))).status_code == 409


async def test_login_with_2fa_answers_two_factor_required_until_a_valid_code_comes(
    client, clock: FakeClock, db
) -> None:
    user = await register(client, "ada")
    secret, _codes = await enable_2fa(client, user, clock)
    clock.advance(30)

    missing = await login(client, "ada")
    assert missing.status_code == 401
    assert missing.json()["code"] == "two_factor_required"
    wrong = await login(client, "ada", totp_code="000000")
    assert (wrong.status_code, wrong.json()["code"]) == (401, "two_factor_required")
    right = await login(client, "ada", totp_code=code_now(secret, clock))
    assert right.status_code == 200, right.text

    reasons = [
        (h["failure_reason"], h["login_method"])
        for h in await fetch(db, "SELECT * FROM auth.login_history ORDER BY created_at")
    ]
    assert reasons == [
        ("two_factor_required", "password"),
        ("invalid_totp", "password"),
        (None, "totp"),
    ]
    [failed] = await outbox_events(db, "login.failed")
    assert failed["data"]["reason"] == "invalid_totp"


async def test_wrong_password_with_2fa_on_is_the_generic_401(client, clock: FakeClock) -> None:
    user = await register(client, "ada")
    secret, _codes = await enable_2fa(client, user, clock)
    clock.advance(30)
    response = await login(client, "ada", "not the password", totp_code=code_now(secret, clock))
    unknown = await login(client, "nobody", "not the password")
    assert response.status_code == unknown.status_code == 401
    assert response.json() == unknown.json()


async def test_a_totp_code_works_once(client, clock: FakeClock) -> None:
    user = await register(client, "ada")
    secret, _codes = await enable_2fa(client, user, clock)
    clock.advance(30)
    code = code_now(secret, clock)
    assert (await login(client, "ada", totp_code=code)).status_code == 200
    again = await login(client, "ada", totp_code=code)
    assert (again.status_code, again.json()["code"]) == (401, "two_factor_required")
    clock.advance(30)
    assert (await login(client, "ada", totp_code=code_now(secret, clock))).status_code == 200


async def test_the_code_used_to_enable_cannot_log_in(client, clock: FakeClock) -> None:
    user = await register(client, "ada")
    secret, _codes = await enable_2fa(client, user, clock)
    assert (await login(client, "ada", totp_code=code_now(secret, clock))).status_code == 401


async def test_wrong_codes_lock_the_account_like_wrong_passwords(client, clock: FakeClock) -> None:
    user = await register(client, "ada")
    secret, _codes = await enable_2fa(client, user, clock)
    clock.advance(30)
    for _ in range(5):
        await login(client, "ada", totp_code="000000")
    locked = await login(client, "ada", totp_code=code_now(secret, clock))
    assert (locked.status_code, locked.headers["retry-after"]) == (423, "60")


async def test_each_backup_code_logs_in_once(client, clock: FakeClock, db) -> None:
    user = await register(client, "ada")
    _secret, codes = await enable_2fa(client, user, clock)
    first = await login(client, "ada", totp_code=codes[3].upper())
    assert first.status_code == 200, first.text
    assert (await login(client, "ada", totp_code=codes[3])).status_code == 401
    used = await fetch(db, "SELECT used_at FROM auth.backup_codes WHERE is_used")
    assert len(used) == 1
    assert (await login(client, "ada", totp_code=codes[4])).status_code == 200


async def test_regenerating_backup_codes_replaces_the_old_ones(client, clock: FakeClock) -> None:
    user = await register(client, "ada")
    secret, old = await enable_2fa(client, user, clock)
    clock.advance(30)
    response = await client.post(
        BACKUP_CODES, json={"code": code_now(secret, clock)}, headers=as_user(user)
    )
    assert response.status_code == 200
    new = response.json()["backup_codes"]
    assert len(new) == 10
    assert not set(new) & set(old)
    assert (await login(client, "ada", totp_code=old[0])).status_code == 401
    assert (await login(client, "ada", totp_code=new[0])).status_code == 200


async def test_disabling_with_a_backup_code_turns_2fa_off(client, clock: FakeClock, db) -> None:
    user = await register(client, "ada")
    _secret, codes = await enable_2fa(client, user, clock)
    response = await client.post(DISABLE, json={"code": codes[0]}, headers=as_user(user))
    assert response.status_code == 204
    assert (await login(client, "ada")).status_code == 200
    [row] = await fetch(db, "SELECT totp_enabled, totp_secret, version FROM auth.users")
    assert (row["totp_enabled"], row["totp_secret"]) == (False, None)
    assert await fetch(db, "SELECT id FROM auth.backup_codes") == []
    [event] = await outbox_events(db, "two_factor.disabled")
    assert (event["data"], event["sequence"]) == ({"user_id": user["id"]}, str(row["version"]))


async def test_disabling_with_a_wrong_code_is_400_and_when_off_409(
    client, clock: FakeClock
) -> None:
    user = await register(client, "ada")
    assert (
        await client.post(DISABLE, json={"code": "123456"}, headers=as_user(user))
    ).status_code == 409
    await enable_2fa(client, user, clock)
    response = await client.post(DISABLE, json={"code": "000000"}, headers=as_user(user))
    assert response.status_code == 400
    assert (await login(client, "ada")).json()["code"] == "two_factor_required"


async def test_2fa_changes_end_every_other_session(client, clock: FakeClock, db) -> None:
    user = await register(client, "ada")
    current = await tokens_for(client, "ada")
    other = await tokens_for(client, "ada")
    secret, _codes = await enable_2fa(client, user, clock, tokens=current)
    assert (
        await client.post(REFRESH, json={"refresh_token": other["refresh_token"]})
    ).status_code == 401
    renewed = await client.post(REFRESH, json={"refresh_token": current["refresh_token"]})
    assert renewed.status_code == 200

    third = await tokens_for(client, "ada", totp_code=code_now(secret, clock, 1))
    clock.advance(60)
    disabled = await client.post(
        DISABLE, json={"code": code_now(secret, clock)}, headers=as_user(user, tokens=current)
    )
    assert disabled.status_code == 204
    assert (
        await client.post(REFRESH, json={"refresh_token": third["refresh_token"]})
    ).status_code == 401
    reasons = [e["data"]["reason"] for e in await outbox_events(db, "session.revoked")]
    assert reasons == ["two_factor_changed", "two_factor_changed"]


async def test_api_keys_cannot_change_2fa(client) -> None:
    user = await register(client, "ada")
    response = await client.post(SETUP, headers=as_user(user, auth_method="api_key"))
    assert response.status_code == 403


async def test_totp_secret_at_rest_opens_only_with_the_configured_key(
    client, clock: FakeClock, db
) -> None:
    user = await register(client, "ada")
    secret, _codes = await enable_2fa(client, user, clock)
    [row] = await fetch(db, "SELECT totp_secret FROM auth.users")
    box = totp.SecretBox("dev-insecure-auth-totp-encryption-key")
    assert box.open(row["totp_secret"]) == secret
    with pytest.raises(ValueError, match="AUTH_TOTP_ENCRYPTION_KEY"):
        totp.SecretBox("another key").open(row["totp_secret"])
