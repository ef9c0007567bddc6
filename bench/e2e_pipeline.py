"""Benchmark: the whole pipeline, from `POST /experiments/{id}/complete` to its two effects.

Starts the real stack (`runyard.devstack.Stack`, embedded PostgreSQL, Tansu, SMTP sink, every
service as its own process), registers --users users through the gateway, gives each a generic
webhook endpoint pointing at an aiohttp receiver on 127.0.0.1, creates the experiments up front,
then completes them through the gateway at each offered rate (open loop: requests are started on
schedule, whether or not earlier ones have answered) and measures per event:

- complete -> webhook receipt (the receiver's clock; Standard Webhooks `webhook-id` = event id),
- complete -> `email_logs.sent_at` of the owner's email (the database's clock, same machine).

"max" offers every event of the step at once: the figure is the saturated throughput. With
--replicas webhooks=2,notifications=2 the consumer services run two processes each, sharing the
topics' partitions through their consumer groups (issue #9 (b)).

Usage:
    uv run python bench/e2e_pipeline.py [--rates 25,50,100,max] [--seconds 10] [--users 40]
        [--replicas webhooks=2,notifications=2] [--write-docs]

--write-docs replaces this bench's block in docs/performance.md (between the
``<!-- bench:e2e_pipeline:<label> -->`` markers, see bench/report.py) with the printed table.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
from aiohttp import web
from report import machine, write_block

from runyard.devstack import Stack
from runyard.shared.testing import free_port


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] if ordered else float("nan")


@dataclass
class Receiver:
    url: str = ""
    #: experiment id -> (receipt time, event id)
    got: dict[str, tuple[float, str]] = field(default_factory=dict)
    duplicates: int = 0


async def start_receiver(box: Receiver) -> web.AppRunner:
    import json

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        now = time.time()
        event = json.loads(body)
        if event.get("type") == "experiment.completed":
            if event["subject"] in box.got:
                box.duplicates += 1
            else:
                box.got[event["subject"]] = (now, event["id"])
        return web.Response(status=204)

    port = free_port()
    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    box.url = f"http://127.0.0.1:{port}/hook"
    return runner


async def register_users(api: httpx.AsyncClient, n: int, hook_url: str) -> list[dict[str, str]]:
    users = []
    for i in range(n):
        name = f"bench{uuid.uuid4().hex[:10]}"
        password = "correct horse battery staple"
        r = await api.post(
            "/api/v1/auth/register",
            json={"username": name, "email": f"{name}@example.test", "password": password},
        )
        r.raise_for_status()
        login = await api.post("/api/v1/auth/login", json={"login": name, "password": password})
        login.raise_for_status()
        auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
        hook = await api.post(
            "/api/v1/webhooks",
            json={
                "name": "bench",
                "provider_type": "generic",
                "url": hook_url,
                "enabled_events": ["experiment.completed"],
            },
            headers=auth,
        )
        hook.raise_for_status()
        users.append({"id": r.json()["id"], **auth, "index": str(i)})
    return users


async def create_experiments(
    api: httpx.AsyncClient, users: list[dict[str, str]], n: int
) -> list[tuple[str, dict[str, str]]]:
    made: list[tuple[str, dict[str, str]]] = []
    sem = asyncio.Semaphore(8)

    async def one(i: int) -> None:
        user = users[i % len(users)]
        headers = {"Authorization": user["Authorization"]}
        async with sem:
            r = await api.post(
                "/api/v1/experiments",
                json={"name": f"bench-{uuid.uuid4().hex[:12]}", "model_type": "cnn1d"},
                headers=headers,
            )
        r.raise_for_status()
        made.append((r.json()["id"], headers))

    await asyncio.gather(*(one(i) for i in range(n)))
    return made


@dataclass
class Step:
    label: str
    offered: float | None
    events: int
    http_s: float = 0.0
    completed_at: dict[str, float] = field(default_factory=dict)
    http_errors: int = 0


async def run_step(
    api: httpx.AsyncClient, experiments: list[tuple[str, dict[str, str]]], rate: float | None
) -> Step:
    step = Step("max" if rate is None else f"{rate:g}/s", rate, len(experiments))
    start = time.time()

    async def complete(i: int, experiment_id: str, headers: dict[str, str]) -> None:
        if rate is not None:
            await asyncio.sleep(max(0.0, start + i / rate - time.time()))
        sent = time.time()
        r = await api.post(
            f"/api/v1/experiments/{experiment_id}/complete",
            json={"final_metrics": {"val_accuracy": 0.9}},
            headers=headers,
        )
        if r.status_code == 200:
            step.completed_at[experiment_id] = sent
        else:
            step.http_errors += 1

    await asyncio.gather(*(complete(i, e, h) for i, (e, h) in enumerate(experiments)))
    step.http_s = time.time() - start
    return step


async def wait_for_effects(
    stack: Stack, box: Receiver, step: Step, drain_s: float
) -> dict[str, float]:
    """Event id -> email sent_at (epoch seconds), once every completion has both effects."""
    deadline = time.time() + drain_s
    conn = await asyncpg.connect(stack.admin_dsn)
    try:
        while True:
            hooks = [e for e in step.completed_at if e in box.got]
            ids = [box.got[e][1] for e in hooks]
            rows = await conn.fetch(
                "SELECT event_id, extract(epoch FROM sent_at) AS sent "
                "FROM notifications.email_logs WHERE status = 'sent' AND event_id = ANY($1)",
                ids,
            )
            sent = {r["event_id"]: float(r["sent"]) for r in rows}
            if (len(hooks) == len(step.completed_at) and len(sent) == len(hooks)) or (
                time.time() > deadline
            ):
                return sent
            await asyncio.sleep(0.25)
    finally:
        await conn.close()


def summarise(step: Step, box: Receiver, sent: dict[str, float]) -> dict[str, Any]:
    hook_lat = [box.got[e][0] - t for e, t in step.completed_at.items() if e in box.got]
    mail_lat = [
        sent[box.got[e][1]] - t
        for e, t in step.completed_at.items()
        if e in box.got and box.got[e][1] in sent
    ]
    first = min(step.completed_at.values(), default=0.0)
    last_hook = max((box.got[e][0] for e in step.completed_at if e in box.got), default=first)
    last_mail = max(
        (sent[box.got[e][1]] for e in step.completed_at if e in box.got and box.got[e][1] in sent),
        default=first,
    )
    n = len(step.completed_at)
    return {
        "offered": step.label,
        "completed": n,
        "http_errors": step.http_errors,
        "complete_per_s": n / step.http_s if step.http_s else 0.0,
        "webhooks_per_s": len(hook_lat) / max(last_hook - first, 1e-9),
        "emails_per_s": len(mail_lat) / max(last_mail - first, 1e-9),
        "hook_ms": [1000 * percentile(hook_lat, p) for p in (0.5, 0.95, 0.99)],
        "mail_ms": [1000 * percentile(mail_lat, p) for p in (0.5, 0.95, 0.99)],
        "missing_hooks": n - len(hook_lat),
        "missing_mails": n - len(mail_lat),
    }


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| Offered | Completed (HTTP 200) | Completes/s | Webhooks/s | Emails/s "
        "| complete -> webhook p50 / p95 / p99 | complete -> email sent p50 / p95 / p99 "
        "| Missing webhooks / emails |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        hook = " / ".join(f"{v:,.0f}" for v in r["hook_ms"])
        mail = " / ".join(f"{v:,.0f}" for v in r["mail_ms"])
        lines.append(
            f"| {r['offered']} | {r['completed']} | {r['complete_per_s']:.0f} "
            f"| {r['webhooks_per_s']:.0f} | {r['emails_per_s']:.0f} | {hook} ms | {mail} ms "
            f"| {r['missing_hooks']} / {r['missing_mails']} |"
        )
    return "\n".join(lines)


def parse_replicas(value: str) -> dict[str, int]:
    if not value:
        return {}
    return {k: int(v) for k, v in (item.split("=") for item in value.split(","))}


async def bench(args: argparse.Namespace, stack: Stack) -> list[dict[str, Any]]:
    box = Receiver()
    runner = await start_receiver(box)
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    try:
        async with httpx.AsyncClient(
            base_url=stack.gateway_url, timeout=120.0, limits=limits
        ) as api:
            users = await register_users(api, args.users, box.url)
            results = []
            for raw in args.rates.split(","):
                rate = None if raw == "max" else float(raw)
                n = args.max_events if rate is None else int(rate * args.seconds)
                experiments = await create_experiments(api, users, n)
                # let the experiment.created fan-out (no endpoint subscribes to it) drain first
                await asyncio.sleep(2.0)
                step = await run_step(api, experiments, rate)
                sent = await wait_for_effects(stack, box, step, drain_s=args.drain_timeout)
                result = summarise(step, box, sent)
                results.append(result)
                print(table([result]).splitlines()[-1], flush=True)
            if box.duplicates:
                print(f"DUPLICATE webhook receipts: {box.duplicates}")
            return results
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="25,50,100,max")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--max-events", type=int, default=1000)
    parser.add_argument("--users", type=int, default=40)
    parser.add_argument("--replicas", default="", help="e.g. webhooks=2,notifications=2")
    parser.add_argument("--drain-timeout", type=float, default=180.0)
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    replicas = parse_replicas(args.replicas)
    label = "one-instance" if not replicas else "replicas-" + args.replicas.replace(",", "-")
    extra_env = {
        # the bench registers and logs in many users from 127.0.0.1
        "GATEWAY_RATE_LIMIT_LOGIN_PER_IP_PER_MINUTE": "100000",
        "GATEWAY_RATE_LIMIT_USER_PER_MINUTE": "1000000",
    }
    with tempfile.TemporaryDirectory(prefix="runyard-bench-") as tmp:
        stack = Stack.isolated(tmp, replica_counts=replicas, extra_env=extra_env)
        t0 = time.time()
        with stack:
            print(f"stack up in {time.time() - t0:.1f} s ({label})", flush=True)
            results = asyncio.run(bench(args, stack))
    where = f"{machine()}; every service, PostgreSQL, Tansu and the SMTP sink on this machine"
    body = "\n".join(
        [
            f"`uv run python bench/e2e_pipeline.py --rates {args.rates} --seconds "
            f"{args.seconds:g} --users {args.users}"
            + (f" --replicas {args.replicas}" if args.replicas else "")
            + f" --write-docs` ({where}):",
            "",
            table(results),
        ]
    )
    print()
    print(body)
    mean_p50 = statistics.fmean(r["hook_ms"][0] for r in results) if results else 0.0
    print(f"\nmean webhook p50 across steps: {mean_p50:.0f} ms")
    if args.write_docs:
        write_block("e2e_pipeline", label, body)


if __name__ == "__main__":
    main()
