"""``python -m runyard.devstack wait-migrated``: what a Kubernetes initContainer runs so that a
service starts only once the migration Job brought its schema to the head of its history."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from runyard.devstack.provisioning import migrated_to_head, with_database
from runyard.devstack.services import BY_NAME
from runyard.shared.db import asyncpg_dsn
from runyard.shared.migrations import upgrade
from runyard.shared.provision import ensure_database, provision_service, role_url
from runyard.shared.testing import ServiceDatabase

WEBHOOKS = BY_NAME["webhooks"]


def wait_migrated(url: str, timeout: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "runyard.devstack", "wait-migrated", "--services", "webhooks"]
    return subprocess.run(
        [*command, "--timeout", timeout, "--interval", "0.2"],
        env={**os.environ, "WEBHOOKS_DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_a_migrated_schema_is_at_head(
    make_service_database: Callable[[str, str], Awaitable[ServiceDatabase]],
) -> None:
    database = await make_service_database("runyard.webhooks", "webhooks")

    assert await migrated_to_head(WEBHOOKS, database.url)


@pytest.mark.slow
async def test_the_command_waits_until_the_migration_ran(postgres_admin_url: str) -> None:
    name = f"wait_{uuid.uuid4().hex[:8]}"
    await ensure_database(postgres_admin_url, name)
    await provision_service(
        with_database(postgres_admin_url, name),
        schema="webhooks",
        role="runyard_webhooks",
        password="pw",
        database=name,
    )
    url = role_url(postgres_admin_url, role="runyard_webhooks", password="pw", database=name)

    try:
        before = await asyncio.to_thread(wait_migrated, url, "0.5")
        await asyncio.to_thread(upgrade, "runyard.webhooks", url)
        after = await asyncio.to_thread(wait_migrated, url, "10")
    finally:
        admin = await asyncpg.connect(asyncpg_dsn(postgres_admin_url))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    assert before.returncode == 1
    assert "not migrated after 0.5s: webhooks" in before.stderr
    assert after.returncode == 0, after.stdout + after.stderr
    assert "webhooks schema is at its migrations' head" in after.stdout


async def test_an_unreachable_database_is_not_migrated() -> None:
    url = "postgresql+asyncpg://runyard_webhooks:pw@127.0.0.1:1/runyard"

    assert not await migrated_to_head(WEBHOOKS, url)
