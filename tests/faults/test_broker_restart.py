"""Stop the broker under load and start it again. Tansu keeps everything in memory
(docs/decisions/0004): it comes back without topics, records or committed offsets. What it had
acknowledged but the consumers had not read yet is published again by the outbox relays
(docs/decisions/0010), and the inboxes drop what was read already."""

from __future__ import annotations

import json
import time

import pytest

from runyard.devstack import Stack

from .harness import (
    assert_exactly_once,
    assert_only_restarted,
    ready,
    run_scenario,
)
from .load import LoadUser, Receiver

pytestmark = pytest.mark.faults

BROKER_DOWN_S = 2.0


def restart_broker(stack: Stack) -> None:
    stack.stop_broker()
    time.sleep(BROKER_DOWN_S)
    stack.start_broker()


def replays_logged(stack: Stack, service: str) -> list[dict[str, object]]:
    found = []
    for line in stack.log_path(service).read_text().splitlines():
        if "outbox.broker_reset.replay" in line:
            found.append(json.loads(line))
    return found


async def test_broker_restarted_empty_under_load_loses_no_event_and_duplicates_none(
    stack: Stack, load_users: list[LoadUser], receiver: Receiver
) -> None:
    outcome = await run_scenario(
        "restart broker (memory only)", stack, load_users, receiver, lambda: restart_broker(stack)
    )

    assert_exactly_once(outcome)
    assert_only_restarted(outcome, "kafka")
    # the producer saw the reset (more than once when a later batch also lands below the old
    # offsets before the replayed rows are through), and republished rows
    replays = replays_logged(stack, "experiments")
    assert replays
    assert any(int(str(replay["replayed"])) > 0 for replay in replays)
    assert set(ready(stack).values()) == {200}
