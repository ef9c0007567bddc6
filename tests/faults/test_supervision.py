"""The stack restarts what dies, PostgreSQL, the broker and the mail sink included, and leaves a
process that crash-loops stopped while the rest keeps running.

A small stack of its own (the experiments service only) with a short backoff; the kills under
load, with the per-event checks, are in ``test_process_kills_and_restarts``."""

from __future__ import annotations

import os
import signal
import smtplib
import time
from collections.abc import Iterator
from email.message import EmailMessage

import httpx
import pytest

from runyard.devstack import Stack
from runyard.devstack.supervision import RestartPolicy

from .harness import kill_and_wait_for_the_stack_to_restart

pytestmark = pytest.mark.faults

POLICY = RestartPolicy(backoff_s=0.2, backoff_max_s=1.0, crash_loop_restarts=2)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with Stack.isolated(
        tmp_path_factory.mktemp("supervised"), services=["experiments"], restart_policy=POLICY
    ) as running:
        yield running


def experiments_checks(stack: Stack, *, timeout: float = 60.0) -> dict[str, str]:
    """``/ready``'s checks once both pass (or as last seen)."""
    deadline = time.monotonic() + timeout
    checks: dict[str, str] = {}
    while time.monotonic() < deadline:
        try:
            answer = httpx.get(f"{stack.url_of('experiments')}/ready", trust_env=False)
            checks = answer.json().get("checks", {})
        except (httpx.HTTPError, ValueError):
            checks = {}
        if checks == {"postgres": "ok", "kafka": "ok"}:
            break
        time.sleep(0.2)
    return checks


def test_postgres_killed_is_started_again_and_the_service_reconnects(stack: Stack) -> None:
    others = {n: p for n, p in stack.pids.items() if n != "postgres"}

    kill_and_wait_for_the_stack_to_restart(stack, "postgres")

    assert experiments_checks(stack) == {"postgres": "ok", "kafka": "ok"}
    assert {n: p for n, p in stack.pids.items() if n != "postgres"} == others


def test_the_broker_killed_is_started_again_with_the_catalog_topics(stack: Stack) -> None:
    stack.topic_partition_counts = {}

    kill_and_wait_for_the_stack_to_restart(stack, "kafka")

    assert "experiment.completed" in stack.topic_partition_counts  # created on the new broker
    assert experiments_checks(stack) == {"postgres": "ok", "kafka": "ok"}


def test_the_mail_sink_killed_is_started_again_and_stores_mail(stack: Stack) -> None:
    assert stack.mail_dir is not None
    kill_and_wait_for_the_stack_to_restart(stack, "mail")
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@example.test", "b@example.test", "back"
    message.set_content("after a restart")

    with smtplib.SMTP("127.0.0.1", stack.smtp_port, timeout=10) as smtp:
        smtp.send_message(message)

    deadline = time.monotonic() + 10
    while not list(stack.mail_dir.glob("*.eml")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(list(stack.mail_dir.glob("*.eml"))) == 1


def test_a_service_that_exits_at_once_on_start_is_left_stopped_as_crash_looping(
    stack: Stack,
) -> None:
    others = {n: p for n, p in stack.pids.items() if n != "experiments"}
    stack.extra_env["EXPERIMENTS_DB_POOL_SIZE"] = "not a number"  # every start fails at once
    try:
        os.kill(stack.pids["experiments"], signal.SIGKILL)
        deadline = time.monotonic() + 120
        while stack.supervision()["experiments"]["state"] != "crash-loop":
            assert time.monotonic() < deadline, stack.supervision()["experiments"]
            time.sleep(0.1)
        given_up = stack.supervision()["experiments"]
        time.sleep(2 * POLICY.backoff_max_s)  # longer than any backoff: nothing starts it again

        assert stack.supervision()["experiments"] == given_up
        assert given_up["restarts"] == POLICY.crash_loop_restarts
        assert given_up["last_exit"] == "exited with code 1"
        assert "experiments" not in stack.pids
        assert {n: p for n, p in stack.pids.items() if n != "experiments"} == others
        report = (stack.logs_dir / "stack.log").read_text()
        assert "experiments is crash-looping" in report
        assert str(stack.log_path("experiments")) in report
        assert "int_parsing" in report  # the tail of its log, with the reason
    finally:
        del stack.extra_env["EXPERIMENTS_DB_POOL_SIZE"]

    stack.start_service("experiments")  # by hand, once the cause is gone
    stack.wait_ready("experiments")

    assert stack.supervision()["experiments"]["state"] == "running"
