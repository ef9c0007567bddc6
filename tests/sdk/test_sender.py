"""The write-ahead log, batching, retries and exit handling, against a small real HTTP server
in this process (``fake_server``): failures on demand that the whole stack cannot produce at a
chosen moment (a response lost after the request was applied, 503 bursts, a refused epoch)."""

from __future__ import annotations

import json
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

import runyard
from runyard.sdk.config import Settings
from runyard.sdk.sync import sync
from runyard.sdk.wal import RunDir

from .fake_server import Fake, serving


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Fake]:
    with serving() as server:
        monkeypatch.setenv("RUNYARD_URL", server.url)
        monkeypatch.setenv("RUNYARD_API_KEY", "ry_good")
        monkeypatch.setenv("RUNYARD_DIR", str(tmp_path / "runyard"))
        monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
        monkeypatch.delenv("RUNYARD_MODE", raising=False)
        yield server


def runs_dir(tmp_path: Path) -> Path:
    return tmp_path / "runyard" / "runs"


def test_batches_of_at_most_1000_each_epoch_once(
    fake: Fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNYARD_BATCH_SECONDS", "3600")  # only the 1,000-epoch kick and flush
    run = runyard.init(name="batches")
    for epoch in range(2500):
        run.log({"train_loss": 1.0 / (epoch + 1), "acc@1": epoch / 2500}, epoch=epoch)
    wal = (runs_dir(tmp_path) / str(run.id) / "wal.jsonl").read_bytes().splitlines()
    assert wal[0] == b'{"epoch":0,"train_loss":1.0,"metrics":{"acc@1":0.0}}'
    assert run.finish()
    # sent at the start, at each 1,000th epoch and at the end: never more than 1,000 at once
    # (how many each request holds depends on when the sender thread wakes)
    assert max(fake.runs_requests) <= 1000 and sum(fake.runs_requests) == 2500
    assert 3 <= len(fake.runs_requests) <= 4
    stored = fake.only()
    assert sorted(stored["runs"]) == list(range(2500))
    assert stored["status"] == "completed"
    assert not runs_dir(tmp_path).joinpath(str(run.id)).exists()  # all sent: removed


def test_a_lost_response_is_sent_again_and_changes_nothing(fake: Fake) -> None:
    fake.lose_responses["runs"] = 1  # applied, but the client never hears of it
    run = runyard.init(name="lost")
    for epoch in range(1, 11):
        run.log({"val_loss": 1.0 / epoch}, epoch=epoch)
    assert run.finish()
    stored = fake.only()
    assert sorted(stored["runs"]) == list(range(1, 11))
    assert stored["total_epochs"] == 10
    # the lost batch went again, and each of its epochs was found unchanged
    assert len(fake.runs_requests) >= 2
    assert fake.unchanged == fake.runs_requests[0]


@pytest.mark.slow  # most of a minute of logging under tracemalloc
def test_outage_keeps_logging_with_bounded_memory(
    fake: Fake, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = runyard.init(name="outage")
    fake.down = True
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for epoch in range(100_000):
            run.log({"train_loss": 1.0, "val_loss": 2.0, "a": 3.0, "b": 4.0}, epoch=epoch)
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert grown < 2_000_000  # the 100,000 epochs (10 MB) wait on disk, not in memory
    assert not run.flush(0.5)
    fake.down = False
    assert run.flush(60)
    assert run.finish()
    assert len(fake.only()["runs"]) == 100_000
    assert max(fake.runs_requests) <= 1000
    err = capsys.readouterr().err
    assert err.count("answered 503") == 1  # warned once for the whole outage (paths may hold "503")
    assert "reachable again" in err


def test_an_epoch_the_server_refuses_does_not_stop_the_others(
    fake: Fake, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = runyard.init(name="poison")
    for epoch in range(1, 8):
        run.log({"val_loss": 1.0, **({"poison": 1.0} if epoch == 5 else {})}, epoch=epoch)
    assert run.finish()
    assert sorted(fake.only()["runs"]) == [1, 2, 3, 4, 6, 7]
    assert fake.only()["status"] == "completed"
    err = capsys.readouterr().err
    assert 'refused {"epoch":5' in err and "422 Validation failed" in err


def test_server_down_at_exit_then_sync(
    fake: Fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RUNYARD_FLUSH_TIMEOUT", "0.5")
    run = runyard.init(name="down at exit")
    fake.down = True
    with run:
        for epoch in range(1, 21):
            run.log({"val_loss": 1.0 / epoch}, epoch=epoch)
    err = capsys.readouterr().err
    assert '20 epochs of "down at exit" are not on the server yet' in err
    assert f"    RUNYARD_DIR={tmp_path / 'runyard'} runyard sync {run.id}\n" in err
    assert fake.only()["status"] == "running"

    fake.down = False
    [outcome] = sync(Settings.load(), [str(run.id)], report=lambda _: None)
    assert outcome.ok, outcome.message
    assert "20 epochs uploaded" in outcome.message and "completed" in outcome.message
    assert sorted(fake.only()["runs"]) == list(range(1, 21))
    assert fake.only()["status"] == "completed"


def test_created_later_when_init_cannot_reach_the_server(
    fake: Fake, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.down = True
    run = runyard.init(name="late", config={"seed": 1})
    assert run.id is None
    assert "created on the server later" in capsys.readouterr().err
    for epoch in range(1, 6):
        run.log({"val_loss": 1.0 / epoch}, epoch=epoch)
    fake.lose_responses["create"] = 1  # created, but the answer is lost: no second experiment
    fake.down = False
    assert run.finish()
    stored = fake.only()
    assert stored["name"] == "late" and stored["config"]["seed"] == 1
    assert sorted(stored["runs"]) == [1, 2, 3, 4, 5]
    assert run.id == stored["id"]


def test_a_refused_key_mid_run_keeps_the_epochs_for_sync(
    fake: Fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RUNYARD_FLUSH_TIMEOUT", "2")
    run = runyard.init(name="revoked")
    fake.key = "ry_rotated"
    for epoch in range(1, 4):
        run.log({"val_loss": 1.0}, epoch=epoch)
    assert not run.finish()
    err = capsys.readouterr().err
    assert err.count("401 Unauthorized") == 2  # the refusal, and the reason nothing was sent
    assert "runyard sync" in err
    monkeypatch.setenv("RUNYARD_API_KEY", "ry_rotated")
    [outcome] = sync(Settings.load(), report=lambda _: None)
    assert outcome.ok, outcome.message
    assert sorted(fake.only()["runs"]) == [1, 2, 3]


@pytest.mark.parametrize("exists", [False, True])
def test_heartbeat_while_open_and_a_missing_endpoint_is_fine(
    fake: Fake, monkeypatch: pytest.MonkeyPatch, exists: bool
) -> None:
    monkeypatch.setenv("RUNYARD_HEARTBEAT_SECONDS", "1")
    monkeypatch.setenv("RUNYARD_BATCH_SECONDS", "0.05")
    fake.heartbeat_exists = exists
    run = runyard.init(name="beats")
    run.log({"val_loss": 1.0})
    deadline = time.monotonic() + 30
    while fake.heartbeats < (3 if exists else 1) and time.monotonic() < deadline:
        time.sleep(0.05)
    if exists:
        assert fake.heartbeats >= 3
    else:
        time.sleep(2.5)  # two more heartbeat periods: a 404 is not asked again
        assert fake.heartbeats == 1
    assert run.finish()
    assert fake.only()["status"] == "completed"


def test_a_torn_last_line_is_never_read(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path, "r", {"experiment_id": None})
    run.wal_path.write_bytes(b'{"epoch":1,"val_loss":1.0}\n{"epoch":2,"val_lo')
    lines = run.read(0)
    assert [(line.epoch, line.end) for line in lines] == [(1, 27)]
    assert run.unsent_epochs(0) == 1
    assert json.loads(lines[0].data) == {"epoch": 1, "val_loss": 1.0}


def test_epochs_logged_after_a_flush_wait_for_the_batch_interval(
    fake: Fake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """flush() kicks the sender; once the server has what was written at the kick, the kick
    is spent: epochs logged afterwards stay on disk until ``batch_seconds`` (or a 1,000-epoch
    kick, or the next flush), even when the kick landed mid-cycle."""
    monkeypatch.setenv("RUNYARD_BATCH_SECONDS", "3600")
    for attempt in range(5):  # the first flush usually lands while the run is being created
        run = runyard.init(name=f"spent-kick-{attempt}")
        for epoch in range(15):
            run.log({"train_loss": 1.0}, epoch=epoch)
        assert run.flush(30)
        for epoch in range(15, 30):
            run.log({"train_loss": 1.0}, epoch=epoch)
        time.sleep(0.5)
        assert run.id is not None
        assert sorted(fake.runs(run.id)) == list(range(15)), attempt
        assert run.finish()
        assert sorted(fake.runs(run.id)) == list(range(30))


def test_the_backoff_of_a_long_outage_stays_at_its_cap() -> None:
    from runyard.sdk.sender import BACKOFF_MAX, backoff

    assert all(0 < backoff(failures) <= BACKOFF_MAX for failures in (1, 5, 1100, 10**6))
