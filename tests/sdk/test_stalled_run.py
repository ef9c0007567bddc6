"""A training run that stops reporting, on the whole stack (item 5 of the SDK issue, test (e)).

A real training process logs with the SDK (heartbeat every second) and holds after a few
epochs: its heartbeats keep the experiment alive past the silence limit. Then it is frozen
(SIGSTOP): the experiment becomes stalled, its owner gets the email and the owner's webhook
receives ``experiment.stalled``. Thawed (SIGCONT), it reports again: ``experiment.resumed``
follows and the flag goes; the run then finishes normally.

The stack of this module runs with a 5-second silence limit checked every half second (its own
stack: the package's runs with the defaults).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from runyard.devstack import Stack
from runyard.shared.testing import free_port

from .conftest import TRAIN, Account, Training, sign_up, wait_until

pytestmark = pytest.mark.sdk

STALE_AFTER_S = 5
LIVENESS = {
    "EXPERIMENTS_STALE_AFTER_S": str(STALE_AFTER_S),
    "EXPERIMENTS_STALL_POLL_INTERVAL_S": "0.5",
}
WITHOUT_CONSOLE = ["auth", "experiments", "notifications", "webhooks", "gateway"]


@pytest.fixture(scope="module")
def stalling_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with Stack.isolated(
        tmp_path_factory.mktemp("stall-stack"), services=WITHOUT_CONSOLE, extra_env=LIVENESS
    ) as running:
        yield running


@pytest.fixture
def owner(stalling_stack: Stack) -> Account:
    return sign_up(stalling_stack.gateway_url, prefix="stall", key_name="training box")


@dataclass
class Receiver:
    """A real HTTP endpoint on loopback that records the events POSTed to it."""

    url: str
    events: list[dict[str, Any]] = field(default_factory=list)

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        return [e for e in list(self.events) if e.get("type") == event_type]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    port = free_port()
    box = Receiver(url=f"http://127.0.0.1:{port}/hook")

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            box.events.append(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield box
    finally:
        server.shutdown()
        server.server_close()


def mails(mail_dir: Path, address: str, subject: str) -> list[EmailMessage]:
    found = []
    for path in sorted(mail_dir.glob("*.eml")):
        message = BytesParser(policy=default_policy).parsebytes(path.read_bytes())
        if address in str(message["To"]) and message["Subject"] == subject:
            found.append(message)
    return found


def start_training(tmp_path: Path, account: Account, *args: str) -> Training:
    work = tmp_path / "train"
    work.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("RUNYARD_") and k != "XDG_CONFIG_HOME"
    }
    env.update(
        RUNYARD_URL=account.url,
        RUNYARD_API_KEY=account.api_key,
        RUNYARD_DIR=str(tmp_path / "runyard"),
        RUNYARD_HEARTBEAT_SECONDS="1",
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        NO_PROXY="127.0.0.1,localhost",
        PYTHONUNBUFFERED="1",
    )
    progress = work / "progress.jsonl"
    with open(work / "stdout", "wb") as out, open(work / "stderr", "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, str(TRAIN), "--progress", str(progress), "--gates", str(work), *args],
            env=env,
            stdout=out,
            stderr=err,
        )
    return Training(proc, progress, work)


def test_a_run_that_stops_heart_beating_is_stalled_alerted_and_resumed(
    stalling_stack: Stack, owner: Account, receiver: Receiver, tmp_path: Path
) -> None:
    assert stalling_stack.mail_dir is not None
    address = f"{owner.username}@example.test"
    name = f"night run {uuid.uuid4().hex[:6]}"
    subject = f'Your training run "{name}" stopped reporting'
    with owner.client() as server:
        hook = server.post(
            "/webhooks",
            json={
                "name": "alerts",
                "provider_type": "generic",
                "url": receiver.url,
                "enabled_events": ["experiment.stalled", "experiment.resumed"],
            },
        )
        assert hook.status_code == 201, hook.text

        training = start_training(
            tmp_path, owner, "--name", name, "--epochs", "12", "--hold-at", "5:go"
        )
        try:
            training.wait_for_epoch(5)
            experiment_id = training.experiment_id

            def experiment() -> dict[str, Any]:
                found = server.get(f"/experiments/{experiment_id}")
                assert found.status_code == 200, found.text
                body: dict[str, Any] = found.json()
                return body

            wait_until(lambda: experiment()["total_epochs"] == 5, "5 epochs on the server")
            # held, logging nothing, for longer than the limit: its heartbeats keep it alive
            time.sleep(STALE_AFTER_S + 2)
            alive = experiment()
            assert (alive["status"], alive["stalled_at"]) == ("running", None)
            last_seen, started = (
                datetime.fromisoformat(alive[k]) for k in ("last_seen_at", "started_at")
            )
            assert last_seen > started + timedelta(seconds=STALE_AFTER_S)

            training.proc.send_signal(signal.SIGSTOP)  # frozen: no heartbeat, no epoch
            stalled = wait_until(lambda: experiment()["stalled_at"] and experiment(), "stalled")
            assert stalled["status"] == "running" and stalled["total_epochs"] == 5
            [mail] = wait_until(
                lambda: mails(stalling_stack.mail_dir, address, subject), "the owner's email"
            )
            part = mail.get_body(preferencelist=("plain",))
            assert part is not None
            text = str(part.get_content())
            assert f"no heartbeat and no epoch for more than {STALE_AFTER_S} seconds" in text
            [alert] = wait_until(lambda: receiver.of_type("experiment.stalled"), "the webhook")
            assert alert["subject"] == experiment_id
            assert alert["data"]["name"] == name and alert["data"]["total_epochs"] == 5
            assert alert["data"]["stale_after_s"] == STALE_AFTER_S

            training.proc.send_signal(signal.SIGCONT)  # it reports again
            [resumed] = wait_until(lambda: receiver.of_type("experiment.resumed"), "resumed")
            assert resumed["subject"] == experiment_id
            assert resumed["data"]["status"] == "running"
            assert resumed["data"]["stalled_at"] == alert["data"]["stalled_at"]
            assert int(resumed["sequence"]) == int(alert["sequence"]) + 1
            assert experiment()["stalled_at"] is None

            training.release("go")
            code, _out, err = training.finish()
            assert code == 0, err
        finally:
            if training.proc.poll() is None:
                training.proc.send_signal(signal.SIGCONT)
                training.proc.kill()
                training.proc.wait(timeout=30)

        done = experiment()
        assert (done["status"], done["total_epochs"], done["stalled_at"]) == ("completed", 12, None)
    # one silence, one alert of each kind
    assert len(mails(stalling_stack.mail_dir, address, subject)) == 1
    assert len(receiver.of_type("experiment.stalled")) == 1
    assert len(receiver.of_type("experiment.resumed")) == 1
