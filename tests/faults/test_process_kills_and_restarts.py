"""Kill -9 each service under load, restart PostgreSQL under load: every acknowledged completion
ends as exactly one email and exactly one successful webhook delivery, and nothing but the faulted
component was restarted by hand."""

from __future__ import annotations

import httpx
import pytest

from runyard.devstack import Stack

from .conftest import LoadUser, Outcome, Receiver, run_scenario

pytestmark = pytest.mark.faults

SERVICES = ("auth", "experiments", "notifications", "webhooks", "gateway")


def assert_exactly_once(outcome: Outcome, *, receiver_may_repeat: bool = False) -> None:
    effects = outcome.effects
    assert outcome.load.acked, "the load got no completion acknowledged"
    assert outcome.load.abandoned == 0
    assert outcome.load.errors == []
    unrecorded = [x for x in outcome.load.acked if len(effects.completions.get(x, [])) != 1]
    assert unrecorded == [], "acknowledged completions without exactly one outbox event"
    assert effects.missing() == [], "events without their email or webhook delivery"
    for event_id in effects.event_ids:
        assert effects.emails[event_id] == 1, event_id
        assert effects.emails_sent[event_id] == 1, event_id
        assert effects.deliveries[event_id] == 1, event_id
        assert effects.webhook_successes[event_id] == 1, event_id
        assert outcome.receiver[event_id] >= 1, event_id
        if not receiver_may_repeat:
            assert outcome.receiver[event_id] == 1, event_id


def assert_only_restarted(outcome: Outcome, *restarted: str) -> None:
    """Every other service kept its process (nobody restarted it) and all answer ready."""
    for name in SERVICES:
        if name in restarted:
            assert outcome.pids_after[name] != outcome.pids_before[name], name
        else:
            assert outcome.pids_after[name] == outcome.pids_before[name], name


def ready(stack: Stack) -> dict[str, int]:
    return {
        name: httpx.get(f"{url}/ready", timeout=5.0, trust_env=False).status_code
        for name, url in stack.service_urls.items()
    }


def kill_and_start(stack: Stack, name: str) -> None:
    stack.kill(name)  # SIGKILL: no shutdown hook runs
    stack.start_service(name)
    stack.wait_ready(name)


@pytest.mark.parametrize("service", ["notifications", "webhooks"])
async def test_a_consumer_killed_under_load_leaves_each_event_with_one_email_and_one_delivery(
    stack: Stack, load_users: list[LoadUser], receiver: Receiver, service: str
) -> None:
    outcome = await run_scenario(
        f"kill -9 {service}", stack, load_users, receiver, lambda: kill_and_start(stack, service)
    )

    # A delivery POSTed just before the kill but not yet recorded is POSTed again with the
    # same webhook-id (at-least-once on the wire); the databases hold it once.
    assert_exactly_once(outcome, receiver_may_repeat=service == "webhooks")
    assert_only_restarted(outcome, service)
    assert set(ready(stack).values()) == {200}


async def test_the_producer_killed_under_load_publishes_its_outbox_after_restart(
    stack: Stack, load_users: list[LoadUser], receiver: Receiver
) -> None:
    outcome = await run_scenario(
        "kill -9 experiments",
        stack,
        load_users,
        receiver,
        lambda: kill_and_start(stack, "experiments"),
    )

    assert_exactly_once(outcome)
    assert_only_restarted(outcome, "experiments")
    assert set(ready(stack).values()) == {200}


async def test_the_gateway_killed_under_load_loses_no_acknowledged_completion(
    stack: Stack, load_users: list[LoadUser], receiver: Receiver
) -> None:
    outcome = await run_scenario(
        "kill -9 gateway", stack, load_users, receiver, lambda: kill_and_start(stack, "gateway")
    )

    assert_exactly_once(outcome)
    assert_only_restarted(outcome, "gateway")
    assert outcome.load.statuses["ConnectError"] > 0  # the clients did see it go away
    assert set(ready(stack).values()) == {200}


async def test_postgres_restarted_under_load_is_reconnected_to_by_every_service_by_itself(
    stack: Stack, load_users: list[LoadUser], receiver: Receiver
) -> None:
    outcome = await run_scenario(
        "restart PostgreSQL", stack, load_users, receiver, stack.restart_postgres
    )

    # A webhook POSTed while its result could not be written is POSTed again after the lease.
    assert_exactly_once(outcome, receiver_may_repeat=True)
    assert_only_restarted(outcome)
    assert outcome.pids_after["postgres"] != outcome.pids_before["postgres"]
    assert set(ready(stack).values()) == {200}
