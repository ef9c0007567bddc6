"""Alert rules: evaluation CPU of the experiments process per logged epoch, with 0, 10 and
1,000 active rules of the owner (issue #22's goal: at most 0.2 ms per epoch per matching rule).

For each rule count, a new owner gets that many enabled rules (through the API; a mix of
threshold, plateau, divergence and overfitting-gap rules on the usual metrics, scope "all", so
every rule matches every experiment), and one experiment logs ``--epochs`` epochs (4 metrics) in
requests of ``--batch`` epochs. After each request the pending ``experiment.epochs_logged`` is
written as the ``epoch-events`` worker would, and the service's own consumer code (the shared
``EventConsumer``, its inbox on real PostgreSQL) handles it: that handling is what is measured,
as this process's CPU time (``time.process_time``: the Python side of the experiments service;
PostgreSQL's backends are not counted) and wall time. Reported: CPU ms per epoch, and above the
0-rule run (the inbox and the rule lookup every event pays) per epoch per rule, and alerts fired.

The service runs in-process (httpx over ASGI); not through the gateway.

``--latency``: instead, the whole stack (``runyard.devstack.Stack``: every service its own
process, embedded PostgreSQL, Tansu, the SMTP sink) and one user with a generic webhook endpoint
(``alert.triggered``) to a receiver in this process and a re-arming rule ``val_loss > 1``; one
training loop makes ``--rate`` epochs/s, one in ``--every`` above 1 (each of those fires, the
next one clears it), and a sender posts what is waiting through the gateway one request at a
time (as the SDK's background thread does). Reported: the time from the epoch being logged by
the loop to the webhook's receipt, p50/p95/p99/max (issue #22's goal: p99 <= 1 s at 50/s).

Usage: uv run python bench/alerts_bench.py [--epochs 400] [--batch 10] [--rules 0,10,1000]
       uv run python bench/alerts_bench.py --latency [--rate 50] [--every 10] [--seconds 20]
Uses DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS when set, else starts embedded Postgres and Tansu.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import time
import uuid
from typing import Any

import asyncpg

from runyard.experiments.config import Settings
from runyard.experiments.consumers import handlers
from runyard.experiments.main import create_app
from runyard.experiments.tracking.service import epoch_events
from runyard.shared.db import asyncpg_dsn, create_engine, create_sessionmaker
from runyard.shared.events import parse_event
from runyard.shared.inbox import EventConsumer
from runyard.shared.testing import (
    identity_headers,
    local_infrastructure,
    migrated_database,
    running_app,
)
from runyard.shared.testing.events import as_record

PASSWORD = "bench-alerts"
CONDITIONS: list[dict[str, Any]] = [
    {"kind": "threshold", "metric": "val_accuracy", "op": ">=", "value": 0.99},
    {"kind": "plateau", "metric": "val_loss", "epochs": 20, "min_delta": 0.001},
    {"kind": "divergence", "metric": "val_loss", "epochs": 5, "percent": 30},
    {"kind": "gap", "val_metric": "val_loss", "train_metric": "train_loss", "gap": 0.5},
]


def epoch_values(epoch: int) -> dict[str, Any]:
    """A plausible run: losses falling with noise, accuracy rising."""
    noise = 0.02 * math.sin(epoch * 1.7)
    return {
        "epoch": epoch,
        "train_loss": 1.0 / (1 + epoch / 10) + noise,
        "val_loss": 1.1 / (1 + epoch / 12) + 1.5 * noise,
        "train_accuracy": min(0.999, 0.5 + epoch / 500),
        "val_accuracy": min(0.995, 0.48 + epoch / 520 + noise),
    }


async def measure(
    client: Any, url: str, admin_url: str, rules: int, epochs: int, batch: int
) -> dict[str, Any]:
    owner = uuid.uuid4()
    headers = identity_headers(owner, "user")
    for i in range(rules):
        body = {"name": f"rule-{i}", "condition": CONDITIONS[i % len(CONDITIONS)]}
        response = await client.post("/api/v1/alert-rules", json=body, headers=headers)
        assert response.status_code == 201, response.text
    created = await client.post(
        "/api/v1/experiments", json={"name": f"bench-{rules}"}, headers=headers
    )
    experiment = created.json()
    engine = create_engine(url, pool_size=2)
    sessionmaker = create_sessionmaker(engine, schema="experiments")
    consumer = EventConsumer(
        sessionmaker=sessionmaker,
        producer=None,  # type: ignore[arg-type]
        bootstrap_servers=[],
        group_id="experiments",
        schema="experiments",
        service="experiments",
        handlers=handlers(),
    )
    conn = await asyncpg.connect(asyncpg_dsn(admin_url))
    cpu = wall = 0.0
    last_outbox = int(await conn.fetchval("SELECT coalesce(max(id), 0) FROM experiments.outbox"))
    try:
        for first in range(1, epochs + 1, batch):
            runs = [epoch_values(e) for e in range(first, min(first + batch, epochs + 1))]
            response = await client.post(
                f"/api/v1/experiments/{experiment['id']}/runs", json={"runs": runs}, headers=headers
            )
            assert response.status_code in (200, 201), response.text
            async with sessionmaker() as session, session.begin():
                await epoch_events.write_due(session, window_s=0)
            rows = await conn.fetch(
                "SELECT id, payload FROM experiments.outbox WHERE id > $1 AND topic = $2 "
                "ORDER BY id",
                last_outbox,
                "experiment.epochs_logged",
            )
            last_outbox = int(
                await conn.fetchval("SELECT coalesce(max(id), 0) FROM experiments.outbox")
            )
            records = [as_record(parse_event(r["payload"])[0], offset=r["id"]) for r in rows]
            started_cpu, started_wall = time.process_time(), time.perf_counter()
            await consumer.process_batch(records)
            cpu += time.process_time() - started_cpu
            wall += time.perf_counter() - started_wall
        fired = await conn.fetchval(
            "SELECT count(*) FROM experiments.alerts WHERE owner_id = $1", owner
        )
    finally:
        await conn.close()
        await engine.dispose()
    return {
        "rules": rules,
        "epochs": epochs,
        "cpu_ms_per_epoch": cpu * 1000 / epochs,
        "wall_ms_per_epoch": wall * 1000 / epochs,
        "alerts": int(fired),
    }


async def run(args: argparse.Namespace, admin_url: str, bootstrap: str) -> list[dict[str, Any]]:
    name = f"bench_alerts_{uuid.uuid4().hex[:8]}"
    url, database_admin_url = await migrated_database(
        admin_url, "runyard.experiments", "experiments", name=name, password=PASSWORD
    )
    settings = Settings(
        environment="test",
        database_url=url,
        kafka_bootstrap_servers=bootstrap,
        run_workers=False,
        log_level="WARNING",
        log_json=True,
    )
    results = []
    async with running_app(create_app(settings)) as client:
        for count in args.rules:
            results.append(
                await measure(client, url, database_admin_url, count, args.epochs, args.batch)
            )
    return results


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] if ordered else math.nan


async def latency(stack: Any, rate: float, seconds: float, every: int) -> dict[str, Any]:
    import httpx
    from aiohttp import web

    from runyard.shared.testing import free_port

    received: dict[int, float] = {}

    async def hook(request: web.Request) -> web.Response:
        event = json.loads(await request.read())
        if event.get("type") == "alert.triggered":
            received.setdefault(int(event["data"]["epoch"]), time.time())
        return web.Response(status=204)

    port = free_port()
    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    sent: dict[int, float] = {}
    achieved = math.nan
    try:
        async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=30) as api:
            name = f"bench{uuid.uuid4().hex[:10]}"
            password = "correct horse battery staple"
            email = f"{name}@example.test"
            registered = await api.post(
                "/api/v1/auth/register",
                json={"username": name, "email": email, "password": password},
            )
            registered.raise_for_status()
            login = await api.post("/api/v1/auth/login", json={"login": name, "password": password})
            login.raise_for_status()
            auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
            hook_body = {
                "name": "bench",
                "provider_type": "generic",
                "url": f"http://127.0.0.1:{port}/hook",
                "enabled_events": ["alert.triggered"],
            }
            (await api.post("/api/v1/webhooks", json=hook_body, headers=auth)).raise_for_status()
            rule = {
                "name": "loss above 1",
                "condition": {"kind": "threshold", "metric": "val_loss", "op": ">", "value": 1.0},
                "rearm": True,
            }
            (await api.post("/api/v1/alert-rules", json=rule, headers=auth)).raise_for_status()
            created = await api.post("/api/v1/experiments", json={"name": name}, headers=auth)
            created.raise_for_status()
            runs_url = f"/api/v1/experiments/{created.json()['id']}/runs"

            # the training loop makes an epoch every 1/rate s; a sender (as the SDK's background
            # thread does) sends what is waiting in one request, one request at a time
            waiting: list[dict[str, Any]] = []
            total = int(rate * seconds)
            done = asyncio.Event()

            async def sender() -> None:
                while not (done.is_set() and not waiting):
                    if not waiting:
                        await asyncio.sleep(0.005)
                        continue
                    runs = waiting[:]
                    del waiting[:]
                    body = {"runs": runs}
                    (await api.post(runs_url, json=body, headers=auth)).raise_for_status()

            sending = asyncio.create_task(sender())
            start = time.perf_counter()
            for i in range(total):
                delay = start + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                epoch = i + 1
                if epoch % every == 0:
                    sent[epoch] = time.time()
                waiting.append({"epoch": epoch, "val_loss": 2.0 if epoch % every == 0 else 0.5})
            done.set()
            await sending
            achieved = total / (time.perf_counter() - start)
            deadline = time.time() + 60
            while len(received) < len(sent) and time.time() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.2)
    finally:
        await runner.cleanup()
    delays = [received[e] - sent[e] for e in sent if e in received]
    return {
        "rate": rate,
        "alert_every_epochs": every,
        "achieved_rate": achieved,
        "alerts_expected": len(sent),
        "alerts_received": len(delays),
        "p50_s": percentile(delays, 0.5),
        "p95_s": percentile(delays, 0.95),
        "p99_s": percentile(delays, 0.99),
        "max_s": max(delays) if delays else math.nan,
    }


def run_latency(args: argparse.Namespace) -> None:
    import tempfile

    from runyard.devstack import Stack

    extra_env = {"GATEWAY_RATE_LIMIT_USER_PER_MINUTE": "1000000"}
    with (
        tempfile.TemporaryDirectory(prefix="runyard-bench-") as tmp,
        Stack.isolated(tmp, extra_env=extra_env) as stack,
    ):
        result = asyncio.run(latency(stack, args.rate, args.seconds, args.every))
    print(f"machine: {platform.node()} {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    print(json.dumps(result, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=400, help="epochs logged per rule count")
    parser.add_argument("--batch", type=int, default=10, help="epochs per request and event")
    parser.add_argument(
        "--rules", type=lambda s: [int(x) for x in s.split(",")], default=[0, 10, 1000]
    )
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--latency", action="store_true", help="epoch -> webhook, whole stack")
    parser.add_argument("--rate", type=float, default=50.0, help="--latency: epochs/s")
    parser.add_argument("--seconds", type=float, default=20.0, help="--latency: how long")
    parser.add_argument("--every", type=int, default=10, help="--latency: an alert every N")
    args = parser.parse_args()
    if args.latency:
        run_latency(args)
        return
    with local_infrastructure() as (admin_url, bootstrap):
        results = asyncio.run(run(args, admin_url, bootstrap))
    print(f"machine: {platform.node()} {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    base = next((r["cpu_ms_per_epoch"] for r in results if r["rules"] == 0), 0.0)
    print(f"epochs per event: {args.batch}")
    print(
        f"{'rules':>6} {'CPU ms/epoch':>13} {'wall ms/epoch':>14} {'CPU ms/epoch/rule':>18} alerts"
    )
    for r in results:
        per_rule = (r["cpu_ms_per_epoch"] - base) / r["rules"] if r["rules"] else float("nan")
        r["cpu_ms_per_epoch_per_rule"] = per_rule
        print(
            f"{r['rules']:>6} {r['cpu_ms_per_epoch']:>13.3f} {r['wall_ms_per_epoch']:>14.3f} "
            f"{per_rule:>18.4f} {r['alerts']}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
