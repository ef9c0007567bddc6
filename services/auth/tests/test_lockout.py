from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from runyard.auth.lockout import FailureState, LockoutPolicy, after_failure
from runyard.auth.main import create_app
from runyard.shared.testing import running_app
from services.auth.tests.auth_helpers import (
    PASSWORD,
    USERS,
    FakeClock,
    as_user,
    fetch,
    from_client,
    login,
    make_admin,
    outbox_events,
    register,
)

WRONG = "not the password at all"
T0 = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def fail_times(policy: LockoutPolicy, moments: list[datetime]) -> FailureState:
    state = FailureState()
    for moment in moments:
        state = after_failure(policy, state, moment)
    return state


def test_keycloak_wait_is_increment_times_failures_over_factor_capped_at_max() -> None:
    policy = LockoutPolicy()
    state = FailureState()
    waits = []
    for n in range(1, 81):
        state = after_failure(policy, state, T0 + timedelta(seconds=n))
        wait = state.locked_until - (T0 + timedelta(seconds=n)) if state.locked_until else None
        waits.append((n, wait.total_seconds() if wait else 0))
    assert [w for n, w in waits if n < 5] == [0, 0, 0, 0]
    assert dict(waits)[5] == 60
    assert dict(waits)[9] == 60
    assert dict(waits)[10] == 120
    assert dict(waits)[45] == 540
    assert dict(waits)[75] == 900
    assert dict(waits)[80] == 900


def test_failures_start_anew_after_twelve_hours_without_one() -> None:
    policy = LockoutPolicy()
    four = fail_times(policy, [T0 + timedelta(minutes=m) for m in range(4)])
    assert four.failures == 4
    later = after_failure(policy, four, four.last_failure_at + timedelta(hours=12, seconds=1))
    assert (later.failures, later.locked_until) == (1, None)
    sooner = after_failure(policy, four, four.last_failure_at + timedelta(hours=12))
    assert sooner.failures == 5
    assert sooner.locked_until is not None


def test_retry_after_rounds_up_and_is_zero_when_not_locked() -> None:
    state = FailureState(failures=5, last_failure_at=T0, locked_until=T0 + timedelta(seconds=60))
    assert state.retry_after(T0 + timedelta(seconds=0.5)) == 60
    assert state.retry_after(T0 + timedelta(seconds=59.9)) == 1
    assert state.retry_after(T0 + timedelta(seconds=60)) == 0
    assert not state.is_locked(T0 + timedelta(seconds=60))


async def fail(client, login_name: str, times: int, headers: dict[str, str] | None = None) -> None:
    for _ in range(times):
        response = await login(client, login_name, WRONG, headers=headers)
        assert response.status_code == 401, response.text


async def test_fifth_failure_locks_for_sixty_seconds_even_for_the_right_password(
    client, clock: FakeClock, db
) -> None:
    user = await register(client, "ada")
    await fail(client, "ada", 5)

    locked = await login(client, "ada", PASSWORD)
    assert locked.status_code == 423
    assert locked.headers["retry-after"] == "60"
    assert locked.headers["content-type"] == "application/problem+json"

    clock.advance(59)
    assert (await login(client, "ada", PASSWORD)).headers["retry-after"] == "1"
    clock.advance(1)
    assert (await login(client, "ada", PASSWORD)).status_code == 200

    [row] = await fetch(db, "SELECT failed_login_attempts, locked_until FROM auth.users")
    assert (row["failed_login_attempts"], row["locked_until"]) == (0, None)
    reasons = [
        h["failure_reason"]
        for h in await fetch(db, "SELECT * FROM auth.login_history ORDER BY created_at")
    ]
    assert reasons == ["invalid_password"] * 5 + ["account_locked"] * 2 + [None]
    assert user["id"]


async def test_locked_answers_are_the_same_for_right_or_wrong_password_and_unknown_users(
    client,
) -> None:
    await register(client, "ada")
    await fail(client, "ada", 5)
    await fail(client, "nobody", 5)

    answers = [
        await login(client, "ada", PASSWORD),
        await login(client, "ada", WRONG),
        await login(client, "nobody", PASSWORD),
        await login(client, "nobody", WRONG),
    ]
    assert {a.status_code for a in answers} == {423}
    assert len({a.text for a in answers}) == 1
    assert {a.headers["retry-after"] for a in answers} == {"60"}
    assert answers[0].json()["detail"] == "Too many failed attempts. Try again later."


async def test_lock_start_publishes_account_locked_with_the_users_next_version(
    client, clock: FakeClock, db
) -> None:
    user = await register(client, "ada")
    await fail(client, "ada", 5, headers=from_client("198.51.100.77"))

    [event] = await outbox_events(db, "account.locked")
    assert event["key"] == user["id"]
    assert event["sequence"] == "2"
    assert event["data"]["consecutive_failures"] == 5
    assert event["data"]["ip_address"] == "198.51.100.77"
    locked_until = datetime.fromisoformat(event["data"]["locked_until"])
    assert locked_until == clock.now() + timedelta(seconds=60)
    failed = await outbox_events(db, "login.failed")
    assert [e["data"]["consecutive_failures"] for e in failed] == [1, 2, 3, 4, 5]


async def test_attempts_while_locked_are_recorded_but_publish_no_login_failed(client, db) -> None:
    await register(client, "ada")
    await fail(client, "ada", 5)
    for _ in range(3):
        assert (await login(client, "ada", WRONG)).status_code == 423
    assert len(await outbox_events(db, "login.failed")) == 5
    assert len(await outbox_events(db, "account.locked")) == 1
    locked = await fetch(
        db, "SELECT id FROM auth.login_history WHERE failure_reason = 'account_locked'"
    )
    assert len(locked) == 3


async def test_wait_doubles_at_ten_failures(client, clock: FakeClock) -> None:
    await register(client, "ada")
    await fail(client, "ada", 5)
    for _ in range(4):  # each failure after the lock ends locks again for 60 s
        clock.advance(60)
        await fail(client, "ada", 1)
        assert (await login(client, "ada", PASSWORD)).headers["retry-after"] == "60"
    clock.advance(60)
    await fail(client, "ada", 1)
    assert (await login(client, "ada", PASSWORD)).headers["retry-after"] == "120"


async def test_failures_twelve_hours_apart_never_lock(client, clock: FakeClock) -> None:
    await register(client, "ada")
    for _ in range(8):
        await fail(client, "ada", 1)
        clock.advance(12 * 3600 + 1)
    assert (await login(client, "ada", PASSWORD)).status_code == 200


async def test_unknown_logins_lock_like_real_accounts(client, clock: FakeClock, db) -> None:
    await fail(client, "Nobody", 4)
    await fail(client, "nobody", 1)
    clock.advance(1)
    response = await login(client, "NOBODY", PASSWORD)
    assert (response.status_code, response.headers["retry-after"]) == (423, "59")
    [row] = await fetch(db, "SELECT * FROM auth.unknown_login_failures")
    assert (row["login_key"], row["failures"]) == ("nobody", 5)
    assert all(e["data"]["user_id"] is None for e in await outbox_events(db, "login.failed"))
    assert await outbox_events(db, "account.locked") == []


async def test_admin_unlock_lifts_the_lock_and_resets_the_count(client, db) -> None:
    admin = await make_admin(client, db)
    user = await register(client, "ada")
    await fail(client, "ada", 5)

    unlocked = await client.post(f"{USERS}/{user['id']}/unlock", headers=as_user(admin))
    assert unlocked.status_code == 200
    assert (unlocked.json()["failed_login_attempts"], unlocked.json()["locked_until"]) == (0, None)
    assert (await login(client, "ada", PASSWORD)).status_code == 200


async def test_only_admins_may_unlock(client) -> None:
    user = await register(client, "ada")
    response = await client.post(f"{USERS}/{user['id']}/unlock", headers=as_user(user))
    assert response.status_code == 403


async def test_unlocking_an_unknown_user_is_404(client, db) -> None:
    admin = await make_admin(client, db)
    response = await client.post(f"{USERS}/{uuid.uuid4()}/unlock", headers=as_user(admin))
    assert response.status_code == 404


async def test_one_address_is_limited_across_accounts_and_released_after_the_window(
    settings, clock: FakeClock, db
) -> None:
    limited = settings.model_copy(
        update={"login_ip_max_failures": 3, "login_ip_window_seconds": 600}
    )
    attacker = from_client("203.0.113.66")
    async with running_app(create_app(limited, clock=clock)) as client:
        await register(client, "ada")
        for name in ("alice", "bob"):
            await fail(client, name, 1, headers=attacker)
            clock.advance(10)
        await fail(client, "carol", 1, headers=attacker)

        blocked = await login(client, "ada", PASSWORD, headers=attacker)
        assert blocked.status_code == 429
        assert blocked.headers["retry-after"] == "580"
        assert (await login(client, "ada", PASSWORD, headers=from_client("192.0.2.1"))).is_success

        clock.advance(580)
        assert (await login(client, "ada", PASSWORD, headers=attacker)).status_code == 200
    reasons = [
        r["failure_reason"]
        for r in await fetch(
            db, "SELECT failure_reason FROM auth.login_history ORDER BY created_at"
        )
    ]
    assert reasons.count("ip_rate_limited") == 1
