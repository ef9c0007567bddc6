"""`python -m runyard.devstack up` runs in the foreground until `down` (SIGTERM) or Ctrl-C
(SIGINT); a second `up` reuses the data directory (database, keys, role passwords)."""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg
import pytest

from runyard.devstack import free_port

pytestmark = pytest.mark.e2e

OVERRIDES = ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "SMTP_URL", "GATEWAY_PORT")


class Up:
    """`up` as a child process, its output read line by line."""

    #: every `up` started by a test, stopped at teardown if the test failed half-way
    started: list[tuple[Up, Path]] = []

    def __init__(
        self, data_dir: Path, service: str = "experiments", env: dict[str, str] | None = None
    ) -> None:
        Up.started.append((self, data_dir))
        env = {k: v for k, v in os.environ.items() if k not in OVERRIDES} | (env or {})
        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "runyard.devstack",
                "up",
                "--quiet",
                "--data-dir",
                str(data_dir),
                "--services",
                service,
                "--port",
                f"{service}={self.port}",
                "--kafka-port",
                str(free_port()),
                "--smtp-port",
                str(free_port()),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def wait_for(self, text: str, timeout: float = 90.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            self.output.append(line)
            if text in line:
                return line
        raise AssertionError(f"{text!r} not printed; output:\n{''.join(self.output)}")


@pytest.fixture(autouse=True)
def stop_what_a_failed_test_left_running() -> Iterator[None]:
    """A test that fails while `up` runs must not leave a stack (Postgres, Tansu, services) behind
    for the rest of the suite."""
    yield
    while Up.started:
        up, data_dir = Up.started.pop()
        if up.proc.poll() is not None:
            continue
        up.proc.send_signal(signal.SIGINT)
        try:
            up.proc.wait(30)
        except subprocess.TimeoutExpired:
            devstack("down", "--data-dir", str(data_dir))
            up.proc.kill()
            up.proc.wait(10)


def devstack(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runyard.devstack", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


async def _admin_query(data_dir: Path, sql: str) -> object:
    host = data_dir / "postgres"
    conn = await asyncpg.connect(f"postgresql://postgres@/runyard?host={host}")
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


def test_up_serves_until_down_and_a_second_up_reuses_the_data(tmp_path: Path) -> None:
    first = Up(tmp_path)
    banner = first.wait_for("Runyard is up")
    assert f"experiments http://127.0.0.1:{first.port}" in banner
    assert f"mail sink: {tmp_path / 'mail'}" in banner
    assert devstack("status", "--data-dir", str(tmp_path)).returncode == 0
    key = (tmp_path / "keys" / "jwt-ed25519.pem").read_bytes()
    secrets = (tmp_path / "secrets.json").read_text()
    assert oct((tmp_path / "keys" / "jwt-ed25519.pem").stat().st_mode & 0o777) == "0o600"
    asyncio.run(_admin_query(tmp_path, "CREATE TABLE public.kept_between_runs (x int)"))

    down = devstack("down", "--data-dir", str(tmp_path))

    assert down.returncode == 0, down.stdout + down.stderr
    assert first.proc.wait(30) == 0
    assert not (tmp_path / "stack.pid").exists()
    assert not (tmp_path / "postgres" / "postmaster.pid").exists()
    assert devstack("status", "--data-dir", str(tmp_path)).returncode == 3

    second = Up(tmp_path)
    second.wait_for("Runyard is up")
    assert (tmp_path / "keys" / "jwt-ed25519.pem").read_bytes() == key
    assert (tmp_path / "secrets.json").read_text() == secrets
    assert asyncio.run(_admin_query(tmp_path, "SELECT to_regclass('public.kept_between_runs')"))

    second.proc.send_signal(signal.SIGINT)  # Ctrl-C

    assert second.proc.wait(30) == 0
    second.wait_for("runyard: stopped")
    assert not (tmp_path / "postgres" / "postmaster.pid").exists()


def status_rows(data_dir: Path) -> tuple[int, dict[str, dict[str, str]]]:
    """`status`'s exit code and its table: name -> state, pid, uptime, restarts, ready, address."""
    result = devstack("status", "--data-dir", str(data_dir))
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["NAME", "STATE"])
    columns = [c.lower() for c in lines[header].split()]
    rows = {}
    for line in lines[header + 1 :]:
        cells = line.split()
        if len(cells) != len(columns):
            break
        rows[cells[0]] = dict(zip(columns[1:], cells[1:], strict=True))
    return result.returncode, rows


def wait_for_status(data_dir: Path, done: Callable[[dict[str, dict[str, str]]], bool]) -> None:
    deadline = time.monotonic() + 90
    rows: dict[str, dict[str, str]] = {}
    while time.monotonic() < deadline:
        _code, rows = status_rows(data_dir)
        if done(rows):
            return
        time.sleep(0.5)
    raise AssertionError(f"status never got there: {rows}")


@pytest.mark.faults
def test_up_restarts_what_dies_gives_up_on_a_crash_loop_and_restarts_a_process_on_request(
    tmp_path: Path,
) -> None:
    fast = {"RUNYARD_RESTART_BACKOFF_S": "0.2", "RUNYARD_CRASH_LOOP_RESTARTS": "2"}
    up = Up(tmp_path, service="auth", env=fast)
    up.wait_for("Runyard is up")
    code, rows = status_rows(tmp_path)
    assert code == 0
    assert set(rows) == {"postgres", "kafka", "mail", "auth"}
    assert {(r["state"], r["ready"], r["restarts"]) for r in rows.values()} == {
        ("running", "yes", "0")
    }
    assert rows["auth"]["address"] == f"http://127.0.0.1:{up.port}"
    others = {name: rows[name]["pid"] for name in ("postgres", "kafka", "mail")}

    restarted = devstack("restart", "auth", "--data-dir", str(tmp_path))

    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    assert "runyard: auth restarted" in restarted.stdout
    code, rows = status_rows(tmp_path)
    assert code == 0 and rows["auth"]["pid"] != "-"
    assert {name: rows[name]["pid"] for name in others} == others
    killed = rows["auth"]["pid"]

    os.kill(int(killed), signal.SIGKILL)  # from outside: `up` is not told

    up.wait_for("runyard: auth was killed by SIGKILL; starting it again")
    wait_for_status(
        tmp_path,
        lambda rows: rows["auth"]["pid"] not in ("-", killed) and rows["auth"]["ready"] == "yes",
    )
    code, rows = status_rows(tmp_path)
    assert code == 0 and rows["auth"]["restarts"] == "1"
    assert {name: rows[name]["pid"] for name in others} == others

    key_file = tmp_path / "keys" / "jwt-ed25519.pem"
    key = key_file.read_bytes()
    key_file.write_text("not a key\n")  # every start of auth now fails at once
    os.kill(int(rows["auth"]["pid"]), signal.SIGKILL)

    given_up = up.wait_for("runyard: auth is crash-looping")
    assert str(tmp_path / "logs" / "auth.log") in given_up
    code, rows = status_rows(tmp_path)
    assert code == 1
    assert (rows["auth"]["state"], rows["auth"]["pid"], rows["auth"]["ready"]) == (
        "crash-loop",
        "-",
        "no",
    )
    assert {name: rows[name]["pid"] for name in others} == others  # the rest keeps running
    assert {rows[name]["ready"] for name in others} == {"yes"}

    key_file.write_bytes(key)  # the cause is fixed
    again = devstack("restart", "auth", "--data-dir", str(tmp_path))

    assert again.returncode == 0, again.stdout + again.stderr
    code, rows = status_rows(tmp_path)
    assert code == 0 and rows["auth"]["state"] == "running"
    assert devstack("restart", "nope", "--data-dir", str(tmp_path)).returncode == 2
    assert devstack("down", "--data-dir", str(tmp_path)).returncode == 0
    assert up.proc.wait(30) == 0
