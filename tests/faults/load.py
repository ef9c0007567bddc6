"""The fault suite's load: a real client completing experiments at a steady rate.

Every load user has a generic webhook to a local HTTP ``Receiver``, so every
``experiment.completed`` event must end as exactly one ``email_logs`` row and exactly one
successful webhook delivery. The load retries on connection errors and 5xx, and it only counts a
completion as acknowledged when ``POST .../complete`` answered 200.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
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


@contextlib.contextmanager
def serve_receiver() -> Iterator[Receiver]:
    """A ``Receiver`` listening until the block ends."""
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


# ---------------------------------------------------------------------------------- users
@dataclass(frozen=True)
class LoadUser:
    id: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def register_users(stack: Stack, receiver: Receiver, count: int) -> list[LoadUser]:
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
