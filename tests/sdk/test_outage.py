"""(a) The gateway is killed (SIGKILL) in the middle of a training run and started again later:
the loop goes on, never raising, and afterwards every epoch is on the server exactly once."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from runyard.devstack import Stack

from .conftest import Training, assert_exactly, wait_until

pytestmark = pytest.mark.sdk


def test_gateway_killed_mid_run(
    stack: Stack, server: httpx.Client, train: Callable[..., Training]
) -> None:
    training = train(
        "--name", "outage", "--epochs", "60", "--hold-at", "20:down", "--hold-at", "40:up"
    )
    training.wait_for_epoch(20)
    experiment_id = training.experiment_id

    stack.kill("gateway")  # SIGKILL; the stack leaves it down until start_service
    training.release("down")
    # 20 more epochs are logged while nothing answers: log() did not wait for the server
    training.wait_for_epoch(40)
    # the sender meets the outage (it sends every second), says so once, and keeps trying
    wait_until(lambda: "cannot reach" in training.stderr, "the outage reported", 60, training)
    stack.start_service("gateway")
    stack.wait_ready("gateway")
    training.release("up")

    code, _, stderr = training.finish()
    assert code == 0, stderr
    assert stderr.count("cannot reach") == 1, stderr  # warned once, not per epoch
    assert "not on the server yet" not in stderr
    logged = training.logged()
    assert [e["epoch"] for e in logged] == list(range(1, 61))
    assert_exactly(server, experiment_id, logged)
    experiment = server.get(f"/experiments/{experiment_id}").json()
    assert experiment["status"] == "completed"
    assert experiment["metrics"]["val_accuracy"] == logged[-1]["values"]["val_accuracy"]
