"""The model registry from the SDK and the CLI against the whole stack: a model registered from
a run's artifact, aliases set, moved, read and removed, and predictions logged through the
durable path across a gateway outage and a killed process, then read back; a batch whose answer
a proxy loses after the server stored it is stored once."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

import runyard
from runyard.devstack import Stack
from runyard.sdk import models

from .conftest import runyard as cli
from .conftest import wait_until

pytestmark = pytest.mark.sdk


def registered(tmp_path: Path, name: str) -> tuple[dict[str, Any], str, bytes]:
    """Version 1 of ``name``, from the artifact of a run of this process."""
    weights = tmp_path / "weights.bin"
    content = uuid.uuid4().bytes * 300
    weights.write_bytes(content)
    with runyard.init(name=f"models {name}", best_metric="val_accuracy") as run:
        for epoch in range(1, 4):
            run.log({"val_accuracy": 0.8 + epoch / 100}, epoch=epoch)
        run.log_artifact(weights, "model")
        version = runyard.register_model(
            run,
            "model/weights.bin",
            name,
            description="first",
            input_schema={"type": "object", "required": ["rms"]},
        )
    return version, str(run.id), content


def all_predictions(server: httpx.Client, name: str, version: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 500, **({"cursor": cursor} if cursor else {})}
        page = server.get(f"/models/{name}/versions/{version}/predictions", params=params)
        assert page.status_code == 200, page.text
        found += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if not cursor:
            return found


KILLED = """
import os, runyard
runyard.log_predictions({name!r}, 1, [
    {{"input": {{"rms": i}}, "latency_ms": 2.0, "confidence": 0.7, "output": "normal"}}
    for i in range({count})
])
os._exit(9)  # killed before anything could be sent (the gateway is down)
"""


def test_register_alias_and_predictions_survive_an_outage_and_a_killed_process(
    stack: Stack,
    server: httpx.Client,
    sdk_env: dict[str, str],
    env: dict[str, str],
    tmp_path: Path,
) -> None:
    name = f"pump-cnn-{uuid.uuid4().hex[:6]}"
    version, experiment_id, content = registered(tmp_path, name)
    assert version["version"] == 1 and version["status"] == "ready"
    assert version["experiment_id"] == experiment_id  # lineage
    assert version["sha256"] == hashlib.sha256(content).hexdigest()
    assert version["size"] == len(content)

    assert runyard.set_alias(name, "champion", 1)["previous_version"] is None
    assert runyard.get_model_version(name, "champion")["version"] == 1
    assert runyard.get_model_version(name, 1)["aliases"] == ["champion"]

    # the gateway is down: a process logs 1,500 predictions and is killed; this one logs 700
    stack.kill("gateway")
    try:
        dying = subprocess.run(
            [sys.executable, "-c", KILLED.format(name=name, count=1500)],
            env=env,
            capture_output=True,
            timeout=120,
            check=False,
        )
        assert dying.returncode == 9, dying.stderr
        mine = [
            {"input": {"rms": 10_000 + i}, "latency_ms": 3.0, "confidence": 0.4} for i in range(700)
        ]
        assert runyard.log_predictions(name, 1, mine) == 700
        assert not runyard.flush_predictions(2)  # nothing answers: kept on disk
    finally:
        stack.start_service("gateway")
        stack.wait_ready("gateway")

    assert runyard.flush_predictions(120)  # this process's and the dead one's (adopted)
    stored = all_predictions(server, name, 1)
    inputs = sorted(p["input"]["rms"] for p in stored)
    assert inputs == [*range(1500), *range(10_000, 10_700)]  # each once
    stats = server.get(f"/models/{name}/versions/1/predictions/stats").json()
    assert stats["count"] == 2200 and stats["errors"] == 0

    # a refused prediction (the version's input schema) is set aside, the others stored
    runyard.log_predictions(name, 1, [{"input": {"x": 1}, "latency_ms": 1}])
    runyard.log_predictions(name, 1, [{"input": {"rms": -1}, "latency_ms": 1}])
    assert runyard.flush_predictions(60)
    assert len(all_predictions(server, name, 1)) == 2201
    models._at_exit()
    left = list((Path(env["RUNYARD_DIR"]) / "predictions").iterdir())
    rejected = [p / "rejected.jsonl" for p in left if (p / "rejected.jsonl").exists()]
    assert len(rejected) == 1
    (entry,) = [json.loads(line) for line in rejected[0].read_text().splitlines()]
    assert json.loads(entry["line"])["input"] == {"x": 1} and "rms" in entry["reason"]

    runyard.delete_alias(name, "champion")
    assert runyard.get_model_version(name, 1)["aliases"] == []


class LosingProxy:
    """An HTTP proxy in front of the gateway that forwards every request and loses the answer
    of the first ``lose`` prediction POSTs (closes the connection after the gateway answered)."""

    def __init__(self, upstream: str, lose: int) -> None:
        self.lose = lose
        self.lost = 0
        self.keys: list[str | None] = []
        proxy = self
        client = httpx.Client(base_url=upstream, timeout=60)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def forward(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("host", "content-length", "connection")
                }
                answer = client.request(self.command, self.path, content=body, headers=headers)
                if self.command == "POST" and self.path.endswith("/predictions"):
                    proxy.keys.append(self.headers.get("idempotency-key"))
                    if answer.status_code == 201 and proxy.lost < proxy.lose:
                        proxy.lost += 1  # the server stored it; the client never hears so
                        self.close_connection = True
                        return
                self.send_response(answer.status_code)
                for key, value in answer.headers.items():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(key, value)
                self.send_header("content-length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = forward

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._client = client
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._client.close()


@pytest.fixture
def losing_proxy(stack: Stack) -> Iterator[LosingProxy]:
    proxy = LosingProxy(stack.gateway_url, lose=2)
    try:
        yield proxy
    finally:
        proxy.close()


def test_a_batch_whose_answer_is_lost_is_stored_once(
    server: httpx.Client,
    sdk_env: dict[str, str],
    tmp_path: Path,
    losing_proxy: LosingProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = f"pump-lost-{uuid.uuid4().hex[:6]}"
    registered(tmp_path, name)
    monkeypatch.setenv("RUNYARD_URL", losing_proxy.url)  # the predictions go through the proxy
    rows = [{"input": {"rms": i}, "latency_ms": 1.0, "confidence": 0.5} for i in range(1500)]
    assert runyard.log_predictions(name, 1, rows) == 1500
    assert runyard.flush_predictions(120)

    assert losing_proxy.lost == 2  # two batches were stored and their answers lost
    stored = all_predictions(server, name, 1)
    assert sorted(p["input"]["rms"] for p in stored) == list(range(1500))  # each once
    stats = server.get(f"/models/{name}/versions/1/predictions/stats").json()
    assert stats["count"] == 1500
    keys = losing_proxy.keys
    assert all(keys) and len(keys) > len(set(keys))  # the retries carried the same keys
    models._at_exit()


def test_models_ls_show_alias_from_the_shell(
    server: httpx.Client, sdk_env: dict[str, str], env: dict[str, str], tmp_path: Path
) -> None:
    name = f"cli-model-{uuid.uuid4().hex[:6]}"
    _, experiment_id, _ = registered(tmp_path, name)
    second = server.post(
        f"/models/{runyard.get_model_version(name, 1)['model_id']}/versions",
        json={"experiment_id": experiment_id, "artifact_path": "model/"},
    )
    assert second.status_code == 201, second.text

    listed = cli(env, "models", "ls", name[-6:])
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[0].split() == [
        "NAME",
        "VERSIONS",
        "ALIASES",
        "DESCRIPTION",
        "UPDATED",
    ]
    assert name in listed.stdout and " 2 " in listed.stdout

    made = cli(env, "models", "alias", name, "champion", "1")
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == f"champion of {name} is now v1"
    moved = cli(env, "models", "alias", name, "champion", "2")
    assert moved.stdout.strip() == f"champion of {name} moved from v1 to v2"

    shown = cli(env, "models", "show", name)
    assert shown.returncode == 0, shown.stderr
    assert "aliases: champion -> v2" in shown.stdout
    v1 = next(line for line in shown.stdout.splitlines() if line.startswith("v1 "))
    assert "ready" in v1 and experiment_id in v1 and "model/weights.bin" in v1
    as_json = cli(env, "models", "show", name, "--json")
    assert [v["version"] for v in json.loads(as_json.stdout)["versions"]] == [2, 1]

    removed = cli(env, "models", "alias", name, "champion", "--delete")
    assert removed.returncode == 0 and removed.stdout.strip() == f"champion of {name} removed"
    wait_until(lambda: runyard.get_model_version(name, 2)["aliases"] == [], "the alias gone", 10)

    for args, message in (
        (
            ("models", "show", "no-such-model"),
            "runyard: error: no registered model 'no-such-model'",
        ),
        (
            ("models", "alias", name, "champion", "99"),
            "runyard: error: 422 Validation failed: The model has no version 99",
        ),
        (("models", "alias", name, "latest", "1"), "runyard: error: 422"),
        (("models", "alias", name, "champion"), "runyard: error: give a VERSION"),
    ):
        failed = cli(env, *args)
        assert failed.returncode == 1, (args, failed.stdout)
        assert failed.stderr.startswith(message), failed.stderr
        assert len(failed.stderr.strip().splitlines()) == 1 and "Traceback" not in failed.stderr
