"""``runyard.log_predictions``: the local write-ahead log and its sender, against a small real
HTTP server in this process that answers ``POST /api/v1/models/{name}/versions/{v}/predictions``
as Runyard does (all or none, 422 naming the refused prediction's index) and fails on demand.
Like the server, it stores a batch's ``Idempotency-Key`` with it and answers a repeat from it;
it can lose answers (store, then close the connection unanswered). The whole stack's side (a
real outage, reading back, a lost answer through a proxy) is in ``test_models.py``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import runyard
from runyard.sdk import models


@dataclass
class PredictionServer:
    url: str = ""
    #: the predictions of every accepted request, per request
    batches: list[list[dict[str, Any]]] = field(default_factory=list)
    paths: set[str] = field(default_factory=set)
    down: bool = False
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: Idempotency-Key -> (count, body) of the batches stored under one, as the server keeps
    keys: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    #: the key of every request, in order (None: none sent)
    sent_keys: list[str | None] = field(default_factory=list)
    replays: int = 0
    #: the next this many answers are lost: the batch is stored, the connection closed unanswered
    lose: int = 0
    #: called (outside the lock) when an answer is lost
    on_lost: Any = None

    def stored(self) -> list[dict[str, Any]]:
        return [p for batch in self.batches for p in batch]


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PredictionServer]:
    fake = PredictionServer()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length") or 0))
            key = self.headers.get("idempotency-key")
            with fake.lock:
                fake.requests += 1
                fake.sent_keys.append(key)
                if key is not None and key in fake.keys:
                    count, first = fake.keys[key]
                    if first != raw:
                        status, answer = 422, {"errors": [{"loc": ["header", "Idempotency-Key"]}]}
                    else:
                        fake.replays += 1
                        status, answer = 201, {"count": count, "replayed": True}
                else:
                    status, answer = self.answer(json.loads(raw))
                    if status == 201 and key is not None:
                        fake.keys[key] = (answer["count"], raw)
                lost = status == 201 and fake.lose > 0
                if lost:
                    fake.lose -= 1
            if lost:  # stored, but the client never hears of it
                self.close_connection = True
                if fake.on_lost is not None:
                    fake.on_lost()
                return
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def answer(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            if fake.down:
                return 503, {"title": "Service Unavailable"}
            rows = body["predictions"]
            for index, row in enumerate(rows):
                if row["input"] == "poison":
                    loc = ["body", "predictions", index, "input"]
                    return 422, {"title": "Unprocessable", "errors": [{"loc": loc, "msg": "bad"}]}
            fake.paths.add(self.path)
            fake.batches.append(rows)
            return 201, {"count": len(rows)}

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    fake.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    monkeypatch.setenv("RUNYARD_URL", fake.url)
    monkeypatch.setenv("RUNYARD_API_KEY", "ry_good")
    monkeypatch.setenv("RUNYARD_DIR", str(tmp_path / "runyard"))
    monkeypatch.setenv("RUNYARD_BATCH_SECONDS", "0.05")
    try:
        yield fake
    finally:
        models._at_exit()  # this test's sender thread ends; what is unsent stays on disk
        httpd.shutdown()
        httpd.server_close()


def rows(count: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        {"input": {"i": i}, "output": "ok", "confidence": 0.5, "latency_ms": 1.5}
        for i in range(start, start + count)
    ]


def logs_left(tmp_path: Path) -> list[Path]:
    root = tmp_path / "runyard" / "predictions"
    return sorted(root.iterdir()) if root.exists() else []


def test_batches_of_at_most_1000_every_prediction_once_with_its_logging_time(
    server: PredictionServer, tmp_path: Path
) -> None:
    assert runyard.log_predictions("pump cnn", 3, rows(2500)) == 2500
    assert runyard.log_predictions("pump cnn", 3, rows(1, start=2500)[0]) == 1
    assert runyard.flush_predictions(30)

    stored = server.stored()
    assert sorted(p["input"]["i"] for p in stored) == list(range(2501))
    assert max(len(b) for b in server.batches) <= 1000
    assert server.paths == {"/api/v1/models/pump%20cnn/versions/3/predictions"}
    assert all(p["time"].endswith("+00:00") for p in stored)  # set when logged
    models._at_exit()
    assert logs_left(tmp_path) == []  # all sent: the local log is gone


def test_an_outage_is_waited_out_and_nothing_is_sent_twice(server: PredictionServer) -> None:
    server.down = True
    runyard.log_predictions("m", 1, rows(1200))
    assert not runyard.flush_predictions(1.0)
    assert server.requests >= 1 and server.stored() == []
    # the flush waits out the backoff (0.5 s doubling, jittered): a handful of tries in that
    # second, not a tight loop of hundreds
    assert server.requests < 10
    server.down = False
    assert runyard.flush_predictions(60)
    assert sorted(p["input"]["i"] for p in server.stored()) == list(range(1200))


def test_a_refused_prediction_is_set_aside_and_the_rest_of_its_batch_stored(
    server: PredictionServer, tmp_path: Path
) -> None:
    batch = rows(10)
    batch[4]["input"] = "poison"
    runyard.log_predictions("m", 1, batch)
    assert runyard.flush_predictions(30)

    assert sorted(p["input"]["i"] for p in server.stored()) == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    (log_dir,) = logs_left(tmp_path)
    rejected = [json.loads(line) for line in (log_dir / "rejected.jsonl").read_text().splitlines()]
    assert [json.loads(r["line"])["input"] for r in rejected] == ["poison"]
    assert "422" in rejected[0]["reason"]
    models._at_exit()  # all sent: only what was refused is kept
    assert [p.name for p in log_dir.iterdir()] == ["rejected.jsonl"]


def test_an_invalid_prediction_raises_and_none_of_the_call_is_logged(
    server: PredictionServer,
) -> None:
    with pytest.raises(ValueError, match="prediction 1: a prediction needs latency_ms"):
        runyard.log_predictions("m", 1, [rows(1)[0], {"input": 1}])
    with pytest.raises(ValueError, match="confidence"):
        runyard.log_predictions("m", 1, {"input": 1, "latency_ms": 1, "confidence": 1.5})
    with pytest.raises(ValueError, match="version"):
        runyard.log_predictions("m", 0, rows(1))
    assert runyard.flush_predictions(5)
    assert server.stored() == []


CRASHING = """
import os, runyard
runyard.log_predictions("m", 2, [
    {"input": {"i": i}, "latency_ms": 1.0, "confidence": 0.9} for i in range(1500)
])
os._exit(9)  # killed: no exit handler, no flush
"""


def test_predictions_of_a_killed_process_are_sent_by_the_next_one(
    server: PredictionServer, tmp_path: Path
) -> None:
    server.down = True  # the dying process never reaches the server
    env = {k: v for k, v in os.environ.items()}
    done = subprocess.run(
        [sys.executable, "-c", CRASHING], env=env, capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 9, done.stderr
    assert len(logs_left(tmp_path)) == 1
    server.down = False

    assert runyard.flush_predictions(60)  # adopts the dead process's log

    stored = server.stored()
    assert sorted(p["input"]["i"] for p in stored) == list(range(1500))
    assert server.paths == {"/api/v1/models/m/versions/2/predictions"}
    models._at_exit()
    assert logs_left(tmp_path) == []


def test_a_lost_answer_is_retried_with_the_same_key_and_the_same_lines(
    server: PredictionServer,
) -> None:
    """The server stores a batch but its answer is lost, and more predictions are logged
    before the retry: the retry sends the pinned lines again under the same key (stored
    nothing twice), then the new ones under another."""
    server.lose = 1
    server.on_lost = lambda: runyard.log_predictions("m", 1, rows(5, start=10))
    runyard.log_predictions("m", 1, rows(10))
    assert runyard.flush_predictions(60)

    assert sorted(p["input"]["i"] for p in server.stored()) == list(range(15))
    assert server.replays == 1
    first, retry, *rest = server.sent_keys
    assert first is not None and retry == first
    assert rest and all(k is not None and k != first for k in rest)
    assert [len(b) for b in server.batches] == [10, 5]


LOSING = """
import os, runyard
runyard.log_predictions("m", 2, [
    {"input": {"i": i}, "latency_ms": 1.0, "confidence": 0.9} for i in range(1500)
])
runyard.flush_predictions(3)  # every answer is lost: nothing is acknowledged
os._exit(9)  # killed: no exit handler, no flush
"""


def test_a_batch_the_server_stored_for_a_killed_process_is_not_stored_again(
    server: PredictionServer, tmp_path: Path
) -> None:
    server.lose = 10**6
    env = {k: v for k, v in os.environ.items()}
    done = subprocess.run(
        [sys.executable, "-c", LOSING], env=env, capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 9, done.stderr
    assert [len(b) for b in server.batches] == [1000]  # stored, never acknowledged
    server.lose = 0

    assert runyard.flush_predictions(60)  # adopts the log: the same batch, the same key

    assert sorted(p["input"]["i"] for p in server.stored()) == list(range(1500))
    assert server.replays >= 1
    models._at_exit()
    assert logs_left(tmp_path) == []
