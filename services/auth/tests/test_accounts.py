from __future__ import annotations

import asyncio
import json
import sys
import uuid

import pytest

from services.auth.tests.auth_helpers import (
    ME,
    NEW_PASSWORD,
    PASSWORD,
    USERS,
    as_user,
    fetch,
    login,
    make_admin,
    outbox_events,
    register,
)


async def patch_me(client, user, tokens=None, **body):
    return await client.patch(ME, json=body, headers=as_user(user, tokens=tokens))


async def test_time_zone_and_name_change_publishes_user_updated_with_the_next_version(
    client, db
) -> None:
    user = await register(client, "ada")
    response = await patch_me(client, user, timezone="Europe/Berlin", full_name="Ada Lindqvist")
    assert response.status_code == 200, response.text
    assert (response.json()["timezone"], response.json()["full_name"]) == (
        "Europe/Berlin",
        "Ada Lindqvist",
    )
    [event] = await outbox_events(db, "user.updated")
    assert event["sequence"] == "2"
    assert event["data"] == {
        "user_id": user["id"],
        "username": "ada",
        "email": "ada@example.org",
        "role": "user",
        "is_active": True,
        "timezone": "Europe/Berlin",
        "full_name": "Ada Lindqvist",
    }


async def test_unknown_time_zone_is_422(client) -> None:
    user = await register(client, "ada")
    response = await patch_me(client, user, timezone="Mars/Olympus_Mons")
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "timezone"]


async def test_patch_that_changes_nothing_publishes_nothing(client, db) -> None:
    user = await register(client, "ada")
    assert (await patch_me(client, user, timezone="UTC")).status_code == 200
    assert await outbox_events(db, "user.updated") == []


async def test_password_change_needs_the_current_password_and_the_policy(client, db) -> None:
    user = await register(client, "ada")
    wrong = await patch_me(
        client, user, current_password="nope nope nope", new_password=NEW_PASSWORD
    )
    assert wrong.status_code == 403
    common = await patch_me(client, user, current_password=PASSWORD, new_password="password1234")
    assert common.status_code == 422
    assert common.json()["errors"][0]["loc"] == ["body", "new_password"]
    short = await patch_me(client, user, current_password=PASSWORD, new_password="short")
    assert short.status_code == 422

    changed = await patch_me(client, user, current_password=PASSWORD, new_password=NEW_PASSWORD)
    assert changed.status_code == 200
    assert (await login(client, "ada", PASSWORD)).status_code == 401
    assert (await login(client, "ada", NEW_PASSWORD)).status_code == 200
    assert await outbox_events(db, "user.updated") == []
    [event] = await outbox_events(db, "password.changed")
    assert event["data"] == {
        "user_id": user["id"],
        "username": "ada",
        "reason": "changed",
        "ip_address": "127.0.0.1",
    }


async def test_a_new_password_needs_the_current_one_a_code_does_not_do(client, db) -> None:
    user = await register(client, "ada")
    missing = await patch_me(client, user, new_password=NEW_PASSWORD, code="123456")
    assert missing.status_code == 403
    assert missing.json()["code"] == "reauthentication_required"
    assert [e["loc"] for e in missing.json()["errors"]] == [["body", "current_password"]]
    assert (await login(client, "ada", PASSWORD)).status_code == 200


async def test_five_wrong_current_passwords_lock_the_account(client) -> None:
    user = await register(client, "ada")
    for _ in range(5):
        response = await patch_me(
            client, user, current_password="nope nope nope", new_password=NEW_PASSWORD
        )
        assert response.status_code == 403
    locked = await patch_me(client, user, current_password=PASSWORD, new_password=NEW_PASSWORD)
    assert (locked.status_code, locked.headers["retry-after"]) == (423, "60")
    assert (await login(client, "ada", PASSWORD)).status_code == 423


async def test_api_keys_cannot_change_the_account(client) -> None:
    user = await register(client, "ada")
    response = await client.patch(
        ME, json={"timezone": "Europe/Berlin"}, headers=as_user(user, auth_method="api_key")
    )
    assert response.status_code == 403


async def test_admins_list_users_filtered_and_paged(client, db) -> None:
    admin = await make_admin(client, db)
    for name in ("ada", "adam", "bob"):
        await register(client, name)
    response = await client.get(USERS, params={"q": "ad", "limit": 1}, headers=as_user(admin))
    assert response.status_code == 200
    page = response.json()
    assert [u["username"] for u in page["items"]] == ["adam"]
    rest = await client.get(
        USERS, params={"q": "ad", "cursor": page["next_cursor"]}, headers=as_user(admin)
    )
    assert [u["username"] for u in rest.json()["items"]] == ["ada"]
    admins = await client.get(USERS, params={"role": "admin"}, headers=as_user(admin))
    assert [u["username"] for u in admins.json()["items"]] == ["root"]
    assert {"failed_login_attempts", "locked_until"} <= set(admins.json()["items"][0])


async def test_users_and_viewers_cannot_use_admin_endpoints(client) -> None:
    user = await register(client, "ada")
    for role in ("user", "viewer"):
        headers = as_user(user, role=role)
        assert (await client.get(USERS, headers=headers)).status_code == 403
        assert (await client.get(f"{USERS}/{user['id']}", headers=headers)).status_code == 403
        patched = await client.patch(
            f"{USERS}/{user['id']}", json={"role": "admin"}, headers=headers
        )
        assert patched.status_code == 403


async def test_viewers_can_read_their_account(client) -> None:
    user = await register(client, "vera")
    response = await client.get(ME, headers=as_user(user, role="viewer"))
    assert response.status_code == 200


async def test_admin_changes_a_role_and_user_updated_carries_it(client, db) -> None:
    admin = await make_admin(client, db)
    user = await register(client, "ada")
    response = await client.patch(
        f"{USERS}/{user['id']}", json={"role": "viewer"}, headers=as_user(admin)
    )
    assert response.status_code == 200
    assert response.json()["role"] == "viewer"
    [event] = [e for e in await outbox_events(db, "user.updated") if e["key"] == user["id"]]
    assert (event["data"]["role"], event["sequence"]) == ("viewer", "2")
    tokens = (await login(client, "ada")).json()
    assert tokens["access_token"]


async def test_deactivation_publishes_user_deactivated_then_the_full_state(client, db) -> None:
    admin = await make_admin(client, db)
    user = await register(client, "ada")
    response = await client.patch(
        f"{USERS}/{user['id']}", json={"is_active": False, "role": "viewer"}, headers=as_user(admin)
    )
    assert response.status_code == 200
    events = [
        e
        for e in await outbox_events(db)
        if e["key"] == user["id"] and e["topic"] in ("user.deactivated", "user.updated")
    ]
    assert [(e["topic"], e["sequence"]) for e in events] == [
        ("user.deactivated", "2"),
        ("user.updated", "3"),
    ]
    assert events[0]["data"] == {"user_id": user["id"], "username": "ada"}
    assert (events[1]["data"]["is_active"], events[1]["data"]["role"]) == (False, "viewer")

    reactivated = await client.patch(
        f"{USERS}/{user['id']}", json={"is_active": True}, headers=as_user(admin)
    )
    assert reactivated.json()["is_active"] is True
    assert (await login(client, "ada")).status_code == 200


async def test_deactivated_users_get_the_generic_401_and_cannot_change_anything(client, db) -> None:
    admin = await make_admin(client, db)
    user = await register(client, "ada")
    await client.patch(f"{USERS}/{user['id']}", json={"is_active": False}, headers=as_user(admin))
    assert (await login(client, "ada")).json() == (await login(client, "nobody")).json()
    assert (await patch_me(client, user, timezone="Europe/Berlin")).status_code == 403


async def test_the_last_active_admin_cannot_be_demoted_or_deactivated(client, db) -> None:
    admin = await make_admin(client, db)
    for body in ({"role": "user"}, {"is_active": False}):
        response = await client.patch(f"{USERS}/{admin['id']}", json=body, headers=as_user(admin))
        assert response.status_code == 409, body
    second = await make_admin(client, db, "root2")
    response = await client.patch(
        f"{USERS}/{admin['id']}", json={"role": "user"}, headers=as_user(second)
    )
    assert response.status_code == 200


async def test_unknown_user_is_404_for_admins(client, db) -> None:
    admin = await make_admin(client, db)
    assert (await client.get(f"{USERS}/{uuid.uuid4()}", headers=as_user(admin))).status_code == 404
    response = await client.patch(
        f"{USERS}/{uuid.uuid4()}", json={"role": "user"}, headers=as_user(admin)
    )
    assert response.status_code == 404


async def run_cli(*args: str, stdin: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "runyard.auth",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate(stdin.encode())
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_create_admin_command_makes_an_admin_who_can_log_in(client, db) -> None:
    code, out, err = await run_cli(
        "create-admin",
        "--username",
        "root",
        "--email",
        "root@example.org",
        "--password-stdin",
        "--database-url",
        db.url,
        stdin=PASSWORD + "\n",
    )
    assert code == 0, err
    assert out.startswith("created admin root (")
    [row] = await fetch(db, "SELECT role, password_hash FROM auth.users")
    assert row["role"] == "admin"
    assert row["password_hash"].startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    [event] = await outbox_events(db, "user.registered")
    assert event["data"]["role"] == "admin"
    assert (await login(client, "root")).status_code == 200


async def test_create_admin_refuses_a_taken_name_and_a_weak_password(client, db) -> None:
    from runyard.auth.cli import AdminInput, create_admin
    from runyard.shared.http import ProblemError

    await register(client, "root")
    with pytest.raises(ProblemError, match="Username already taken"):
        await create_admin(
            db.url, AdminInput(username="ROOT", email="other@example.org", password=PASSWORD)
        )
    with pytest.raises(ProblemError) as weak:
        await create_admin(
            db.url, AdminInput(username="admin", email="admin@example.org", password="password1234")
        )
    assert "common" in str(weak.value.errors)
    assert [r["username"] for r in await fetch(db, "SELECT username FROM auth.users")] == ["root"]


async def test_the_cli_finds_the_local_stacks_database_in_its_data_dir(db, tmp_path) -> None:
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    from runyard.auth.cli import local_stack_database_url
    from runyard.shared.db import create_engine
    from runyard.shared.testing import TEST_ROLE_PASSWORD

    admin = make_url(db.admin_url)
    socket_dir = str(admin.query.get("host", ""))
    (tmp_path / "postgres").mkdir()
    (tmp_path / "postgres" / "postmaster.pid").write_text(
        f"4242\n{tmp_path}/postgres\n1763760000\n{admin.port or 5432}\n{socket_dir}\n*\n"
    )
    (tmp_path / "secrets.json").write_text(
        json.dumps({"db_passwords": {"auth": TEST_ROLE_PASSWORD, "webhooks": "x"}})
    )
    url = local_stack_database_url(tmp_path, database=db.name)
    assert url is not None
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT current_user"))).scalar() == "runyard_auth"
    finally:
        await engine.dispose()
    assert local_stack_database_url(tmp_path / "elsewhere") is None
