"""Fault injection on the real stack: a steady load of completed experiments, a fault, a check.

One stack serves the whole package (embedded PostgreSQL, Tansu, the SMTP sink, five services).
Every user has a generic webhook to a local HTTP receiver, so every ``experiment.completed``
event must end as exactly one ``email_logs`` row and exactly one successful webhook delivery.
The load is a real client: it retries on connection errors and 5xx, and it only counts a
completion as acknowledged when ``POST .../complete`` answered 200.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiohttp import web

from runyard.devstack import Stack
from runyard.shared.testing import free_port

#: Short leases, so that work a killed process held is taken over within seconds (the defaults
#: are minutes); nothing else differs from the stack ``make up`` runs.
FAULT_ENV = {
    "AUTH_ACCESS_TOKEN_TTL_SECONDS": "3600",
    "NOTIFICATIONS_EMAIL_SENDING_TIMEOUT_S": "5",
    "WEBHOOKS_DELIVERY_TIMEOUT_S": "5",
    "WEBHOOKS_DELIVERY_LEASE_MARGIN_S": "2",
}
USERS = 6
#: Completions per second offered by the load and how long it runs around each fault.
RATE = 20.0
BEFORE_FAULT_S = 2.0
AFTER_FAULT_S = 6.0
#: How long all effects may take to appear once the load stopped.
SETTLE_TIMEOUT_S = 120.0
#: 500 included: while PostgreSQL restarts the services answer 500 for "database unavailable"
#: (reported; 503 would be right) and a client retrying a POST is what the check must survive.
RETRYABLE = {500, 502, 503, 504}


# ------------------------------------------------------------------------------ receiver
@dataclass
class Receiver:
    """A real HTTP endpoint on loopback, served from its own thread and event loop, so it keeps
    answering whatever the test's loop is doing."""

    url: str = ""
    posts: list[tuple[str, str]] = field(default_factory=list)  # (webhook-id, body id)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def received(self) -> Counter[str]:
        with self._lock:
            return Counter(webhook_id for webhook_id, _ in self.posts)

    def record(self, webhook_id: str, event_id: str) -> None:
        with self._lock:
            self.posts.append((webhook_id, event_id))


@pytest.fixture(scope="package")
def receiver() -> Iterator[Receiver]:
    port = free_port()
    box = Receiver(url=f"http://127.0.0.1:{port}/hook")
    loop = asyncio.new_event_loop()
    started = threading.Event()
    runner_box: list[web.AppRunner] = []

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        box.record(request.headers.get("webhook-id", ""), json.loads(body).get("id", ""))
        return web.Response(status=204)

    async def serve() -> None:
        app = web.Application()
        app.router.add_post("/hook", hook)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runner_box.append(runner)
        started.set()

    thread = threading.Thread(target=loop.run_forever, name="webhook-receiver", daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(serve(), loop).result(10)
    assert started.is_set()
    try:
        yield box
    finally:
        asyncio.run_coroutine_threadsafe(runner_box[0].cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


# --------------------------------------------------------------------------------- stack
@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with Stack.isolated(tmp_path_factory.mktemp("faults-stack"), extra_env=FAULT_ENV) as running:
        yield running


@dataclass(frozen=True)
class LoadUser:
    id: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def _register_users(stack: Stack, receiver: Receiver, count: int) -> list[LoadUser]:
    users = []
    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=30.0) as api:
        for _ in range(count):
            name = f"load{uuid.uuid4().hex[:10]}"
            password = "correct horse battery staple"
            registered = await api.post(
                "/api/v1/auth/register",
                json={"username": name, "email": f"{name}@example.test", "password": password},
            )
            assert registered.status_code == 201, registered.text
            login = await api.post("/api/v1/auth/login", json={"login": name, "password": password})
            assert login.status_code == 200, login.text
            user = LoadUser(registered.json()["id"], login.json()["access_token"])
            hook = await api.post(
                "/api/v1/webhooks",
                json={
                    "name": "fault receiver",
                    "provider_type": "generic",
                    "url": receiver.url,
                    "enabled_events": ["experiment.completed"],
                },
                headers=user.auth,
            )
            assert hook.status_code == 201, hook.text
            users.append(user)
    return users


@pytest.fixture(scope="package")
def load_users(stack: Stack, receiver: Receiver) -> list[LoadUser]:
    return asyncio.run(_register_users(stack, receiver, USERS))


# ---------------------------------------------------------------------------------- load
@dataclass
class LoadResult:
    #: experiment id -> wall-clock time its ``complete`` was acknowledged with 200
    acked: dict[str, float] = field(default_factory=dict)
    #: experiments whose ``complete`` was retried after a lost answer and then refused as
    #: already done (409): committed, but never acknowledged to the client
    unacknowledged: set[str] = field(default_factory=set)
    #: experiments created (whatever became of their completion)
    created: set[str] = field(default_factory=set)
    statuses: Counter[str] = field(default_factory=Counter)
    #: flows that got no answer but retryable ones for ``give_up_after_s``
    abandoned: int = 0
    #: flows that got an answer no client should get
    errors: list[str] = field(default_factory=list)


class Load:
    """An open-loop client: starts ``rate`` create+complete flows per second, each retrying on
    connection errors and 5xx (as a real client behind a load balancer would) with a short
    backoff, at most ``max_in_flight`` at once."""

    def __init__(
        self,
        base_url: str,
        users: list[LoadUser],
        *,
        rate: float = RATE,
        max_in_flight: int = 64,
        give_up_after_s: float = 90.0,
    ) -> None:
        self.base_url = base_url
        self.users = users
        self.rate = rate
        self.give_up_after_s = give_up_after_s
        self.result = LoadResult()
        self._slots = asyncio.Semaphore(max_in_flight)
        self._stop = asyncio.Event()
        self._flows: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[None] | None = None
        self._client = httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(10.0, connect=2.0),
            limits=httpx.Limits(max_connections=max_in_flight),
            trust_env=False,
        )

    async def _request(
        self, method: str, path: str, **kwargs: Any
    ) -> tuple[httpx.Response | None, int]:
        """The first answer that is not retryable (None if none came in time), and how many
        requests it took."""
        deadline = time.monotonic() + self.give_up_after_s
        delay = 0.1
        tries = 0
        while time.monotonic() < deadline:
            tries += 1
            try:
                response = await self._client.request(method, path, **kwargs)
                self.result.statuses[str(response.status_code)] += 1
                if response.status_code not in RETRYABLE:
                    return response, tries
            except httpx.TransportError as exc:
                self.result.statuses[type(exc).__name__] += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
        return None, tries

    async def _flow(self, n: int) -> None:
        user = self.users[n % len(self.users)]
        try:
            await self._create_and_complete(user)
        except Exception as exc:
            self.result.errors.append(repr(exc))
        finally:
            self._slots.release()

    async def _create_and_complete(self, user: LoadUser) -> None:
        # A create whose answer was lost leaves an experiment that is never completed: harmless.
        created, tries = await self._request(
            "POST",
            "/api/v1/experiments",
            json={"name": f"fault-{uuid.uuid4().hex}", "model_type": "cnn1d"},
            headers=user.auth,
        )
        if created is None:
            self.result.abandoned += 1
            return
        if created.status_code == 409 and tries > 1:
            return  # an earlier try created it, the answer was lost: never completed, harmless
        if created.status_code != 201:
            raise AssertionError(f"create answered {created.status_code}: {created.text}")
        experiment_id: str = created.json()["id"]
        self.result.created.add(experiment_id)
        done, tries = await self._request(
            "POST",
            f"/api/v1/experiments/{experiment_id}/complete",
            json={"final_metrics": {"val_accuracy": 0.9}, "best_epoch": 3},
            headers=user.auth,
        )
        if done is None:
            self.result.abandoned += 1
        elif done.status_code == 200:
            self.result.acked[experiment_id] = time.time()
        elif done.status_code == 409 and tries > 1:
            self.result.unacknowledged.add(experiment_id)  # an earlier try committed it
        else:
            raise AssertionError(f"complete answered {done.status_code}: {done.text}")

    def start(self) -> None:
        self._runner = asyncio.create_task(self._run())

    async def _run(self) -> None:
        n = 0
        began = time.monotonic()
        while not self._stop.is_set():
            await self._slots.acquire()
            if self._stop.is_set():
                self._slots.release()
                return
            task = asyncio.create_task(self._flow(n))
            self._flows.add(task)
            task.add_done_callback(self._flows.discard)
            n += 1
            wait = began + n / self.rate - time.monotonic()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), timeout=wait)

    async def stop(self) -> LoadResult:
        """Stop starting flows and let the running ones finish (they retry until served)."""
        self._stop.set()
        if self._runner is not None:
            await self._runner
        if self._flows:
            await asyncio.gather(*list(self._flows))
        await self._client.aclose()
        return self.result


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
