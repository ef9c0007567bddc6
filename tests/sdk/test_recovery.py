"""(b) The training process is killed (SIGKILL) mid-run, then ``runyard sync`` uploads every
epoch it logged; (c) an offline run is uploaded by ``runyard sync``; resuming after a crash."""

from __future__ import annotations

import re
import shlex
import signal
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from .conftest import Training, assert_exactly, find_experiment, runyard, wait_until

pytestmark = pytest.mark.sdk

#: the sender sends only when asked (flush): what the server has at the kill is known exactly
NO_BACKGROUND_SENDS = {"RUNYARD_BATCH_SECONDS": "3600"}


def test_killed_training_is_recovered_by_sync(
    server: httpx.Client, env: dict[str, str], train: Callable[..., Training]
) -> None:
    training = train(
        "--name",
        "killed",
        "--epochs",
        "50",
        "--flush-at",
        "15",
        "--hold-at",
        "15:flushed",
        "--hold-at",
        "30:never",
        extra_env=NO_BACKGROUND_SENDS,
    )
    training.wait_for_epoch(15)
    experiment_id = training.experiment_id
    wait_until(lambda: "flushed 15 True" in training.stdout, "flush() returned", 60, training)
    training.release("flushed")
    training.wait_for_epoch(30)
    training.proc.send_signal(signal.SIGKILL)
    assert training.proc.wait(30) == -signal.SIGKILL

    before = server.get(f"/experiments/{experiment_id}").json()
    assert before["status"] == "running"
    assert before["total_epochs"] == 15  # what the flush sent; 16..30 only on the local disk

    synced = runyard(env, "sync")
    assert synced.returncode == 0, synced.stderr
    assert f'{experiment_id} "killed": 15 epochs uploaded' in synced.stdout
    assert "failed" in synced.stdout
    logged = training.logged()
    assert [e["epoch"] for e in logged] == list(range(1, 31))
    assert_exactly(server, experiment_id, logged)
    after = server.get(f"/experiments/{experiment_id}").json()
    assert after["status"] == "failed"
    assert "ended without finishing" in after["error_message"]
    assert not list((Path(env["RUNYARD_DIR"]) / "runs").iterdir())  # uploaded, so removed

    again = runyard(env, "sync")
    assert (again.returncode, again.stdout.strip()) == (0, "nothing to sync")
    assert server.get(f"/experiments/{experiment_id}").json()["total_epochs"] == 30


def test_sync_leaves_a_live_run_alone(
    server: httpx.Client, env: dict[str, str], train: Callable[..., Training]
) -> None:
    training = train(
        "--name", "alive", "--epochs", "10", "--hold-at", "5:go", extra_env=NO_BACKGROUND_SENDS
    )
    training.wait_for_epoch(5)
    experiment_id = training.experiment_id
    synced = runyard(env, "sync")
    assert synced.returncode == 1
    assert f'{experiment_id} "alive": still being written by process' in synced.stderr
    assert (Path(env["RUNYARD_DIR"]) / "runs" / experiment_id / "wal.jsonl").exists()
    training.release("go")
    code, _, stderr = training.finish()
    assert code == 0, stderr
    assert_exactly(server, experiment_id, training.logged())


def test_offline_run_then_sync(
    server: httpx.Client, env: dict[str, str], train: Callable[..., Training]
) -> None:
    training = train(
        "--name",
        "offline run",
        "--epochs",
        "25",
        "--tag",
        "offline-test",
        "--note",
        "trained on a plane",
        extra_env={"RUNYARD_MODE": "offline"},
    )
    code, stdout, stderr = training.finish()
    assert code == 0, stderr
    assert stdout.startswith("experiment None local ")
    assert find_experiment(server, "offline run") is None  # nothing went out
    command = re.search(r"^\s+(RUNYARD_DIR=\S+ runyard sync \S+)$", stderr, re.MULTILINE)
    assert command, stderr
    assert 'offline run "offline run" (25 epochs) is saved in' in stderr

    words = shlex.split(command.group(1))
    sync_env = {**env, "RUNYARD_DIR": words[0].split("=", 1)[1]}
    synced = runyard(sync_env, *words[2:])
    assert synced.returncode == 0, synced.stderr
    assert "25 epochs uploaded" in synced.stdout and "completed" in synced.stdout

    experiment = find_experiment(server, "offline run")
    assert experiment is not None
    assert_exactly(server, experiment["id"], training.logged())
    full = server.get(f"/experiments/{experiment['id']}").json()
    assert full["status"] == "completed"
    assert full["tags"] == ["offline-test"]
    assert full["notes"] == "trained on a plane"
    assert full["hyperparameters"] == {"lr": 0.5, "features": 8}
    assert full["metrics"]["val_accuracy"] == training.logged()[-1]["values"]["val_accuracy"]


def test_resume_after_a_crash(
    server: httpx.Client, env: dict[str, str], train: Callable[..., Training]
) -> None:
    """A process that died is continued by another: ``resume`` takes over its local log (the
    epochs it never sent go first) and goes on from there."""
    first = train(
        "--name",
        "resumed",
        "--epochs",
        "20",
        "--flush-at",
        "4",
        "--hold-at",
        "4:go",
        "--exit-at",
        "12",
        extra_env=NO_BACKGROUND_SENDS,
    )
    wait_until(lambda: "flushed 4 True" in first.stdout, "flush() returned", 60, first)
    experiment_id = first.experiment_id
    first.release("go")
    assert first.finish()[0] == 0
    assert server.get(f"/experiments/{experiment_id}").json()["total_epochs"] == 4

    second = train("--resume", experiment_id, "--first-epoch", "13", "--epochs", "8")
    code, _, stderr = second.finish()
    assert code == 0, stderr
    assert_exactly(server, experiment_id, first.logged() + second.logged())
    assert server.get(f"/experiments/{experiment_id}").json()["status"] == "completed"
