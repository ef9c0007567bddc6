"""The fault suite's scenarios and checks: the load (``load``) around a fault, then the effects
of every event read from the databases and the receiver, checked per event id.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from runyard.devstack import Stack

from .load import (
    AFTER_FAULT_S,
    BEFORE_FAULT_S,
    SETTLE_TIMEOUT_S,
    Load,
    LoadResult,
    LoadUser,
    Receiver,
)


# --------------------------------------------------------------------------------- check
@dataclass
class Effects:
    """What the databases and the receiver hold for a set of experiments."""

    #: experiment id -> event ids of its ``experiment.completed`` outbox rows
    completions: dict[str, list[str]]
    #: event id -> how many rows of each kind
    emails: dict[str, int]
    emails_sent: dict[str, int]
    webhook_successes: dict[str, int]
    deliveries: dict[str, int]
    #: event id -> when its last effect was stored (epoch seconds)
    done_at: dict[str, float]

    @property
    def event_ids(self) -> set[str]:
        return {e for events in self.completions.values() for e in events}

    def missing(self) -> list[str]:
        """Event ids without both effects yet."""
        return sorted(
            e
            for e in self.event_ids
            if self.emails_sent.get(e, 0) < 1 or self.webhook_successes.get(e, 0) < 1
        )


async def read_effects(db: asyncpg.Connection, experiment_ids: set[str]) -> Effects:
    rows = await db.fetch(
        "SELECT key, event_id FROM experiments.outbox "
        "WHERE topic = 'experiment.completed' AND key = ANY($1::text[])",
        sorted(experiment_ids),
    )
    completions: dict[str, list[str]] = {}
    for row in rows:
        completions.setdefault(row["key"], []).append(row["event_id"])
    ids = [r["event_id"] for r in rows]
    emails = await db.fetch(
        "SELECT event_id, count(*) AS n, count(*) FILTER (WHERE status = 'sent') AS sent, "
        "extract(epoch FROM max(sent_at)) AS at FROM notifications.email_logs "
        "WHERE event_type = 'experiment.completed' AND event_id = ANY($1::text[]) "
        "GROUP BY event_id",
        ids,
    )
    hooks = await db.fetch(
        "SELECT event_id, count(*) AS n, extract(epoch FROM max(sent_at)) AS at "
        "FROM webhooks.webhook_logs WHERE status = 'success' AND event_id = ANY($1::text[]) "
        "GROUP BY event_id",
        ids,
    )
    deliveries = await db.fetch(
        "SELECT event_id, count(*) AS n FROM webhooks.webhook_deliveries "
        "WHERE event_id = ANY($1::text[]) GROUP BY event_id",
        ids,
    )
    done_at: dict[str, float] = {}
    for row in [*emails, *hooks]:
        if row["at"] is not None:
            done_at[row["event_id"]] = max(done_at.get(row["event_id"], 0.0), float(row["at"]))
    return Effects(
        completions=completions,
        emails={r["event_id"]: r["n"] for r in emails},
        emails_sent={r["event_id"]: r["sent"] for r in emails},
        webhook_successes={r["event_id"]: r["n"] for r in hooks},
        deliveries={r["event_id"]: r["n"] for r in deliveries},
        done_at=done_at,
    )


async def settle(
    db: asyncpg.Connection, experiment_ids: set[str], *, timeout: float = SETTLE_TIMEOUT_S
) -> Effects:
    """Wait until every completion of these experiments has both effects, or the timeout; the
    effects as found then (the caller asserts on them)."""
    deadline = time.monotonic() + timeout
    while True:
        effects = await read_effects(db, experiment_ids)
        if not effects.missing() or time.monotonic() > deadline:
            return effects
        await asyncio.sleep(0.5)


# ------------------------------------------------------------------------------ scenario
@dataclass
class Outcome:
    name: str
    load: LoadResult
    effects: Effects
    receiver: Counter[str]
    fault_at: float
    back_at: float
    #: seconds from the fault until every event acknowledged before the component was back
    #: had both its effects
    recovered_after_s: float | None
    pids_before: dict[str, int]
    pids_after: dict[str, int]

    @property
    def acked_events(self) -> set[str]:
        return {e for x in self.load.acked for e in self.effects.completions.get(x, [])}

    def summary(self) -> dict[str, Any]:
        events = self.effects.event_ids
        return {
            "scenario": self.name,
            "acked": len(self.load.acked),
            "committed_unacked": len(self.load.unacknowledged),
            "events": len(events),
            "missing": len(self.effects.missing()),
            "duplicate_emails": sum(max(0, n - 1) for n in self.effects.emails.values()),
            "duplicate_webhook_successes": sum(
                max(0, n - 1) for n in self.effects.webhook_successes.values()
            ),
            "receiver_duplicates": sum(max(0, self.receiver[e] - 1) for e in events),
            "component_back_after_s": round(self.back_at - self.fault_at, 2),
            "recovered_after_s": None
            if self.recovered_after_s is None
            else round(self.recovered_after_s, 2),
            "abandoned": self.load.abandoned,
            "client_errors": len(self.load.errors),
            "client_statuses": dict(self.load.statuses),
        }


async def run_scenario(
    name: str,
    stack: Stack,
    users: list[LoadUser],
    receiver: Receiver,
    fault: Callable[[], None],
    *,
    settle_timeout: float = SETTLE_TIMEOUT_S,
) -> Outcome:
    """Load, then ``fault`` (blocking, run in a thread: it returns once the component is back),
    more load, then wait for the effects of every experiment the load created."""
    pids_before = dict(stack.pids)
    load = Load(stack.gateway_url, users)
    load.start()
    await asyncio.sleep(BEFORE_FAULT_S)
    fault_at = time.time()
    await asyncio.to_thread(fault)
    back_at = time.time()
    await asyncio.sleep(AFTER_FAULT_S)
    result = await load.stop()
    db = await asyncpg.connect(stack.admin_dsn)
    try:
        effects = await settle(db, result.created, timeout=settle_timeout)
    finally:
        await db.close()
    outcome = Outcome(
        name=name,
        load=result,
        effects=effects,
        receiver=receiver.received(),
        fault_at=fault_at,
        back_at=back_at,
        recovered_after_s=recovery_time(result, effects, fault_at=fault_at, back_at=back_at),
        pids_before=pids_before,
        pids_after=dict(stack.pids),
    )
    report(outcome.summary())
    return outcome


def recovery_time(
    load: LoadResult, effects: Effects, *, fault_at: float, back_at: float
) -> float | None:
    """Seconds from the fault until every event acknowledged before the component was back had
    both effects and so had the first event acknowledged after it (None if one never did)."""
    before = [x for x, at in load.acked.items() if at <= back_at]
    after = sorted((at, x) for x, at in load.acked.items() if at > back_at)
    watched = before + [x for _at, x in after[:1]]
    events = [e for x in watched for e in effects.completions.get(x, [])]
    if not events or any(e not in effects.done_at for e in events):
        return None
    return max(effects.done_at[e] for e in events) - fault_at


def report(summary: dict[str, Any]) -> None:
    """Print the figures (``-s`` shows them) and append them to ``$RUNYARD_FAULTS_REPORT``."""
    line = json.dumps(summary)
    print(f"\nfaults: {line}")
    target = os.environ.get("RUNYARD_FAULTS_REPORT")
    if target:
        with Path(target).open("a") as out:
            out.write(line + "\n")


# -------------------------------------------------------------------------------- checks
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
    """The named processes got a new pid; every other one (services, replicas, PostgreSQL, the
    broker, the mail sink) kept its process."""
    assert set(restarted) <= outcome.pids_before.keys()
    for name, pid in outcome.pids_before.items():
        if name in restarted:
            assert outcome.pids_after.get(name) not in (None, pid), name
        else:
            assert outcome.pids_after.get(name) == pid, name


def ready(stack: Stack) -> dict[str, int]:
    return {
        name: httpx.get(f"{url}/ready", timeout=5.0, trust_env=False).status_code
        for name, url in stack.instance_urls.items()
    }


def kill_and_wait_for_the_stack_to_restart(
    stack: Stack, name: str, *, timeout: float = 90.0
) -> None:
    """``kill -9`` the process from outside (the stack is not told), then wait until the
    stack's supervisor has started it again and, for a service, it answers ready. Nothing here
    restarts it."""
    before = stack.supervision()[name]
    old_pid = stack.pids[name]
    os.kill(old_pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while True:
        entry = stack.supervision()[name]
        if entry["restarts"] > before["restarts"] and entry["state"] == "running":
            break
        assert time.monotonic() < deadline, f"{name} was not restarted by the stack: {entry}"
        time.sleep(0.1)
    assert entry["pid"] != old_pid
    # the postmaster is not our child where the stack cannot adopt it (not Linux): no status
    assert entry["last_exit"] in ("was killed by SIGKILL", f"(postmaster pid {old_pid}) is gone")
    if name in stack.instances:
        stack.wait_ready(name, timeout=timeout)
