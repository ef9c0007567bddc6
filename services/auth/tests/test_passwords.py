from __future__ import annotations

from runyard.auth.config import Settings
from runyard.auth.main import create_app
from runyard.auth.passwords import Passwords, common_passwords, password_problems
from runyard.shared.testing import running_app
from services.auth.tests.auth_helpers import LOGIN, PASSWORD, REGISTER, fetch, register

OWASP_PREFIX = "$argon2id$v=19$m=19456,t=2,p=1$"


async def test_production_defaults_are_owasp_argon2id_parameters() -> None:
    defaults = Settings(environment="test")
    assert (
        defaults.password_hash_memory_kib,
        defaults.password_hash_time_cost,
        defaults.password_hash_parallelism,
    ) == (19456, 2, 1)
    password_hash = await Passwords.from_settings(defaults).hash(PASSWORD)
    assert password_hash.startswith(OWASP_PREFIX)


async def test_registration_with_default_settings_stores_an_owasp_argon2id_hash(
    settings, db
) -> None:
    production_hashing = settings.model_copy(
        update={
            "password_hash_memory_kib": Settings.model_fields["password_hash_memory_kib"].default,
            "password_hash_time_cost": Settings.model_fields["password_hash_time_cost"].default,
            "password_hash_parallelism": Settings.model_fields["password_hash_parallelism"].default,
        }
    )
    async with running_app(create_app(production_hashing)) as client:
        await register(client, "ada")
        assert (await client.post(LOGIN, json={"login": "ada", "password": PASSWORD})).is_success
    [row] = await fetch(db, "SELECT password_hash FROM auth.users")
    assert row["password_hash"].startswith(OWASP_PREFIX)
    assert PASSWORD not in row["password_hash"]


async def test_login_rehashes_a_password_stored_with_other_parameters(client, settings, db) -> None:
    await register(client, "ada")
    [before] = await fetch(db, "SELECT password_hash FROM auth.users")
    assert "$m=8,t=1,p=1$" in before["password_hash"]

    stronger = settings.model_copy(update={"password_hash_memory_kib": 64})
    async with running_app(create_app(stronger)) as other:
        assert (await other.post(LOGIN, json={"login": "ada", "password": PASSWORD})).is_success
    [after] = await fetch(db, "SELECT password_hash FROM auth.users")
    assert "$m=64,t=1,p=1$" in after["password_hash"]
    async with running_app(create_app(stronger)) as other:
        assert (await other.post(LOGIN, json={"login": "ada", "password": PASSWORD})).is_success


def test_bundled_common_password_list_has_over_ten_thousand_entries() -> None:
    common = common_passwords()
    assert len(common) >= 10_000
    assert {"123456", "password", "qwerty", "iloveyou"} <= common
    assert all(entry == entry.lower() for entry in common)


def test_policy_refuses_common_passwords_also_with_digits_and_symbols_appended() -> None:
    long_common = next(p for p in sorted(common_passwords()) if len(p) >= 12)
    for password in (long_common, long_common.upper(), "password1234", "iloveyou2024!!"):
        assert password_problems(password, username="ada", email="ada@example.org"), password
    assert password_problems(PASSWORD, username="ada", email="ada@example.org") == []


def test_policy_refuses_the_accounts_own_username_or_email() -> None:
    for password in ("lovelace-ada1", "lovelace.ada@example.org"):
        username = "lovelace-ada"
        problems = password_problems(password, username=username, email="lovelace.ada@example.org")
        assert problems == ["must not be your username or email address"], password


async def test_registration_with_a_common_password_is_422_naming_the_field(client, db) -> None:
    response = await client.post(
        REGISTER,
        json={"username": "ada", "email": "ada@example.org", "password": "password1234"},
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    [error] = response.json()["errors"]
    assert error["loc"] == ["body", "password"]
    assert "common" in error["msg"]
    assert await fetch(db, "SELECT id FROM auth.users") == []


async def test_password_length_must_be_12_to_128_characters(client) -> None:
    lengths = {11: 422, 12: 201, 128: 201, 129: 422}
    for i, (length, status) in enumerate(lengths.items()):
        password = ("Zq7!xW3#" * 20)[:length]
        response = await client.post(
            REGISTER,
            json={"username": f"user{i}", "email": f"user{i}@example.org", "password": password},
        )
        assert response.status_code == status, (length, response.text)


async def test_unknown_users_are_checked_against_a_dummy_hash_of_the_same_cost() -> None:
    passwords = Passwords(memory_kib=64, time_cost=3, parallelism=1)
    await passwords.verify_dummy("whatever they typed")
    assert passwords._dummy is not None
    real = await passwords.hash(PASSWORD)
    assert (
        passwords._dummy.split("$")[:4]
        == real.split("$")[:4]
        == [
            "",
            "argon2id",
            "v=19",
            "m=64,t=3,p=1",
        ]
    )
