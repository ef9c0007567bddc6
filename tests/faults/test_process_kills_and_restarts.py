"""``kill -9`` each kind of process under load (a service, a consumer and one of its replicas,
the producer, the gateway, PostgreSQL) and let the stack bring it back by itself; restart
PostgreSQL by hand. Every acknowledged completion ends as exactly one email and exactly one
successful webhook delivery, and nothing but the faulted process got a new pid."""

from __future__ import annotations

import pytest

from runyard.devstack import Stack

from .harness import (
    assert_exactly_once,
    assert_only_restarted,
    kill_and_wait_for_the_stack_to_restart,
    ready,
    run_scenario,
)
from .load import LoadUser, Receiver

pytestmark = pytest.mark.faults


def ready_everywhere(stack: Stack) -> None:
    assert set(ready(stack).values()) == {200}
    assert {e["state"] for e in stack.supervision().values()} == {"running"}


@pytest.mark.parametrize("process", ["notifications", "webhooks", "webhooks-2"])
async def test_a_consumer_killed_under_load_comes_back_and_each_event_has_one_email_and_one_delivery(
    stack: Stack, load_users: list[LoadUser], receiver: Receiver, process: str
) -> None:
    outcome = await run_scenario(
        f"kill -9 {process}",
        stack,
        load_users,
        receiver,
        lambda: kill_and_wait_for_the_stack_to_restart(stack, process),
    )

    # A delivery POSTed just before the kill but not yet recorded is POSTed again with the
    # same webhook-id (at-least-once on the wire); the databases hold it once.
    assert_exactly_once(outcome, receiver_may_repeat=process.startswith("webhooks"))
    assert_only_restarted(outcome, process)
    ready_everywhere(stack)


async def test_the_producer_killed_under_load_comes_back_and_publishes_its_outbox(
    stack: Stack, load_users: list[LoadUser], receiver: Receiver
) -> None:
    outcome = await run_scenario(
        "kill -9 experiments",
        stack,
        load_users,
        receiver,
        lambda: kill_and_wait_for_the_stack_to_restart(stack, "experiments"),
    )

    assert_exactly_once(outcome)
    assert_only_restarted(outcome, "experiments")
    ready_everywhere(stack)


async def test_the_gateway_killed_under_load_comes_back_and_loses_no_acknowledged_completion(
    stack: Stack, load_users: list[LoadUser], receiver: Receiver
) -> None:
    outcome = await run_scenario(
        "kill -9 gateway",
        stack,
        load_users,
        receiver,
        lambda: kill_and_wait_for_the_stack_to_restart(stack, "gateway"),
    )

    assert_exactly_once(outcome)
    assert_only_restarted(outcome, "gateway")
    assert outcome.load.statuses["ConnectError"] > 0  # the clients did see it go away
    ready_everywhere(stack)


async def test_postgres_killed_under_load_is_started_again_and_reconnected_to(
    stack: Stack, load_users: list[LoadUser], receiver: Receiver
) -> None:
    outcome = await run_scenario(
        "kill -9 PostgreSQL",
        stack,
        load_users,
        receiver,
        lambda: kill_and_wait_for_the_stack_to_restart(stack, "postgres"),
    )

    # A webhook POSTed while its result could not be written is POSTed again after the lease.
    assert_exactly_once(outcome, receiver_may_repeat=True)
    assert_only_restarted(outcome, "postgres")
    ready_everywhere(stack)


async def test_postgres_restarted_under_load_is_reconnected_to_by_every_service_by_itself(
    stack: Stack, load_users: list[LoadUser], receiver: Receiver
) -> None:
    outcome = await run_scenario(
        "restart PostgreSQL", stack, load_users, receiver, stack.restart_postgres
    )

    assert_exactly_once(outcome, receiver_may_repeat=True)
    assert_only_restarted(outcome, "postgres")
    ready_everywhere(stack)
