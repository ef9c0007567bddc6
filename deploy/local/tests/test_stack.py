"""The programmatic stack, started with only the experiments service on free ports.

The last test stops the stack; the tests of this module share one stack and run in file order.
"""

from __future__ import annotations

import asyncio
import os
import signal
import smtplib
import subprocess
import sys
import time
from collections.abc import Iterator
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from pathlib import Path

import asyncpg
import httpx
import psutil
import pytest

from runyard.devstack import Stack
from runyard.devstack.provisioning import with_database
from runyard.shared.db import asyncpg_dsn
from runyard.shared.provision import role_url

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with Stack.isolated(tmp_path_factory.mktemp("stack"), services=["experiments"]) as running:
        yield running


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _wait_for_files(directory: Path, pattern: str, timeout: float = 10.0) -> list[Path]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = sorted(directory.glob(pattern))
        if found:
            return found
        time.sleep(0.05)
    return []


def _wait_for_text(path: Path, text: str, timeout: float = 10.0) -> str:
    """The file's text once it holds ``text`` (or at the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        found = path.read_text() if path.exists() else ""
        if text in found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_the_experiments_service_answers_ready(stack: Stack) -> None:
    response = httpx.get(f"{stack.service_urls['experiments']}/ready", trust_env=False)

    assert response.status_code == 200
    assert response.json()["checks"] == {"postgres": "ok", "kafka": "ok"}


def test_a_mail_sent_to_the_sink_is_stored_as_an_eml_file(stack: Stack) -> None:
    assert stack.mail_dir is not None
    message = EmailMessage()
    message["From"] = "runyard@example.test"
    message["To"] = "ada@example.test"
    message["Subject"] = "Experiment completed"
    message.set_content("Your experiment finished.")

    with smtplib.SMTP("127.0.0.1", stack.smtp_port, timeout=10) as smtp:
        smtp.send_message(message, to_addrs=["ada@example.test", "bcc@example.test"])

    [stored] = _wait_for_files(stack.mail_dir, "*.eml")
    mail = BytesParser(policy=default_policy).parsebytes(stored.read_bytes())
    assert mail["Subject"] == "Experiment completed"
    assert mail["X-Envelope-To"] == "ada@example.test, bcc@example.test"
    assert mail.get_content().strip() == "Your experiment finished."
    # the sink logs the mail once it is stored: the line can come a moment after the file
    line = f"subject='Experiment completed' file={stored}"
    log = _wait_for_text(stack.logs_dir / "mailsink.log", line)
    assert line in log, log


async def test_the_service_role_cannot_read_another_schema(stack: Stack) -> None:
    admin = await asyncpg.connect(stack.admin_dsn)
    try:
        await admin.execute("CREATE SCHEMA IF NOT EXISTS other_service")
        await admin.execute("CREATE TABLE IF NOT EXISTS other_service.secrets (value text)")
        await admin.execute("INSERT INTO other_service.secrets VALUES ('hidden')")
    finally:
        await admin.close()

    role = await asyncpg.connect(asyncpg_dsn(stack.service_database_urls["experiments"]))
    try:
        assert await role.fetchval("SELECT current_user") == "runyard_experiments"
        assert await role.fetchval("SELECT count(*) FROM experiments.outbox") == 0
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await role.fetch("SELECT * FROM other_service.secrets")
    finally:
        await role.close()


def test_a_killed_service_can_be_started_again(stack: Stack) -> None:
    old_pid = stack.pids["experiments"]

    assert stack.kill("experiments", signal.SIGKILL) == -signal.SIGKILL
    assert not _alive(old_pid)
    stack.start_service("experiments")
    stack.wait_ready("experiments")

    assert stack.pids["experiments"] != old_pid
    assert httpx.get(f"{stack.service_urls['experiments']}/ready", trust_env=False).is_success


def test_services_run_under_the_quiet_uvicorn_server(stack: Stack) -> None:
    """``runyard.devstack.serve``: uvicorn with a one-second housekeeping tick."""
    cmdline = psutil.Process(stack.pids["experiments"]).cmdline()

    assert cmdline[1:4] == ["-m", "runyard.devstack.serve", "runyard.experiments.main:create_app"]


async def test_the_embedded_postgres_gets_the_development_background_settings(
    stack: Stack,
) -> None:
    admin = await asyncpg.connect(stack.admin_dsn)
    try:
        assert await admin.fetchval("SHOW autovacuum_naptime") == "5min"
    finally:
        await admin.close()


async def test_provision_creates_the_roles_named_in_the_service_urls(stack: Stack) -> None:
    """What docker-compose's one-shot ``migrate`` service runs."""
    url = role_url(
        stack.admin_server_url, role="runyard_experiments", password="pw", database="composed"
    )
    env = {**os.environ, "DATABASE_URL": stack.admin_server_url, "EXPERIMENTS_DATABASE_URL": url}

    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "runyard.devstack", "provision", "--services", "experiments"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    role = await asyncpg.connect(asyncpg_dsn(url))
    try:
        assert await role.fetchval("SELECT count(*) FROM experiments.alembic_version") == 1
    finally:
        await role.close()
    admin = await asyncpg.connect(asyncpg_dsn(with_database(stack.admin_server_url, "postgres")))
    try:
        await admin.execute('DROP DATABASE "composed" WITH (FORCE)')
    finally:
        await admin.close()


def test_stop_leaves_no_process_behind(stack: Stack) -> None:
    started = stack.pids
    children = [c for pid in started.values() for c in psutil.Process(pid).children(recursive=True)]
    assert {"experiments", "mail", "kafka", "postgres"} <= started.keys()

    stack.stop()

    assert stack.pids == {}
    assert [name for name, pid in started.items() if _alive(pid)] == []
    assert [c.pid for c in children if _alive(c.pid)] == []
    assert not (stack.data_dir / "postgres" / "postmaster.pid").exists()
