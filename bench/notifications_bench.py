"""Benchmark: the notifications service's email sender and digest scheduler.

Runs the real code in-process against a real PostgreSQL and a real SMTP server (aiosmtpd's
``Sink`` handler in its own process on 127.0.0.1, as a mail server would be), and reports:
- events handled per second: ``experiment.completed`` through the consumer's handler (one
  transaction per event: preference, in-app entry, rendered email row),
- emails per second to the SMTP sink, with 1 and with --senders concurrent sender loops
  (claim with SKIP LOCKED -> SMTP -> sent + ``email.sent`` outbox row),
- digest build time for --users users with --items due digest items each (claim, group,
  render, store the digest emails and mark the items, in batches of --batch users), with one
  scheduler and with two on the same database.

For the emails it also reports the CPU milliseconds per email of this process (the sender),
PostgreSQL and the SMTP sink (user + system time during the sending; the machine is shared, so
this moves much less than the wall-clock figures). The service logs as in production (JSON lines
at --log-level, INFO by default), written to /dev/null.

Usage: uv run python bench/notifications_bench.py [--emails 1000] [--senders 4]
       [--users 10000] [--items 3] [--batch 200] [--log-level INFO]  (--users 0: emails only)
Uses DATABASE_URL when set, else starts an embedded PostgreSQL (and a Tansu broker it does not
use: ``local_infrastructure`` starts both).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).parent))

from cpu_meter import CpuMeter, children_named, postgres_cluster, this_process

from runyard.notifications.config import Settings
from runyard.notifications.consumers import make_handlers
from runyard.notifications.mailer import Mailer
from runyard.notifications.workers import schedule_due_digests, send_due_emails
from runyard.shared.contracts.auth import UserRegistered
from runyard.shared.contracts.experiments import ExperimentCompleted
from runyard.shared.db import create_engine, create_sessionmaker
from runyard.shared.events import make_event
from runyard.shared.logging import configure_logging
from runyard.shared.migrations import upgrade
from runyard.shared.provision import ensure_database, provision_service, role_url
from runyard.shared.testing import (
    _with_db,
    free_port,
    local_infrastructure,
    wait_for_port,
)

SINK_COMMAND = [sys.executable, "-m", "aiosmtpd", "-n", "-c", "aiosmtpd.handlers.Sink"]


def start_smtp_sink(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [*SINK_COMMAND, "-l", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port("127.0.0.1", port)
    return proc


@contextlib.contextmanager
def quiet() -> Any:
    """The service's log lines (JSON, as in production) go to /dev/null, not the report."""
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        yield


async def count_sent(url: str) -> int:
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            sql = "SELECT count(*) FROM notifications.email_logs WHERE status = 'sent'"
            return int((await conn.execute(text(sql))).scalar_one())
    finally:
        await engine.dispose()


async def provision(admin_url: str) -> str:
    name = f"bench_nt_{uuid.uuid4().hex[:8]}"
    await ensure_database(admin_url, name)
    await provision_service(
        _with_db(admin_url, name),
        schema="notifications",
        role="runyard_notifications",
        password="bench",
        database=name,
    )
    url = role_url(admin_url, role="runyard_notifications", password="bench", database=name)
    await asyncio.to_thread(upgrade, "runyard.notifications", url)
    return url


async def bench_emails(url: str, settings: Settings, emails: int, senders: int) -> None:
    meter = CpuMeter(
        {
            "sender": this_process,
            "postgres": await postgres_cluster(url),
            "smtp sink": children_named("aiosmtpd"),
        }
    )
    engine = create_engine(url, pool_size=senders + 2)
    sessionmaker = create_sessionmaker(engine, schema="notifications")
    handlers = make_handlers(settings)
    owners = [uuid.uuid4() for _ in range(50)]
    for owner in owners:
        event = make_event(
            UserRegistered(user_id=owner, username="u", email=f"{owner.hex[:10]}@example.com"),
            source="/runyard/auth",
            subject=owner,
            sequence=1,
        )
        async with sessionmaker() as session, session.begin():
            await handlers[event.type](session, event, event.payload())

    async def queue(count: int) -> float:
        started = time.perf_counter()
        for i in range(count):
            owner = owners[i % len(owners)]
            event = make_event(
                ExperimentCompleted(
                    experiment_id=uuid.uuid4(),
                    name=f"run {i}",
                    owner_id=owner,
                    status="completed",
                    final_metrics={"val_accuracy": 0.9, "val_loss": 0.2},
                    total_epochs=10,
                    best_epoch=7,
                ),
                source="/runyard/experiments",
                subject=owner,
            )
            with quiet():
                async with sessionmaker() as session, session.begin():
                    await handlers[event.type](session, event, event.payload())
        return time.perf_counter() - started

    mailer = Mailer.from_settings(settings)
    try:
        for loops in sorted({1, senders}):
            queued_in = await queue(emails)
            sent_before = await count_sent(url)
            meter.start()
            started = time.perf_counter()

            async def sender() -> None:
                while await send_due_emails(sessionmaker, settings=settings, mailer=mailer):
                    pass

            with quiet():
                await asyncio.gather(*(sender() for _ in range(loops)))
            elapsed = time.perf_counter() - started
            meter.stop()
            delivered = await count_sent(url) - sent_before
            print(
                f"events handled -> email rows: {emails / queued_in:,.0f} events/s "
                f"({emails} in {queued_in:.2f}s)"
            )
            print(
                f"emails to the SMTP sink, {loops} sender loop(s): {delivered / elapsed:,.0f} "
                f"emails/s ({delivered} in {elapsed:.2f}s); CPU per email: "
                f"{meter.per_operation(delivered)}"
            )
    finally:
        await engine.dispose()


async def seed_digests(url: str, users: int, items: int, now: datetime) -> None:
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("SET search_path TO notifications"))
            await conn.execute(
                text(
                    "INSERT INTO users (user_id, username, email, is_active, timezone, role,"
                    " sequence) SELECT u, 'user' || n, 'user' || n || '@example.com', true,"
                    " (ARRAY['UTC','Europe/Berlin','America/New_York','Asia/Kolkata'])[n % 4 + 1],"
                    " 'user', 1 FROM (SELECT gen_random_uuid() AS u, n"
                    " FROM generate_series(1, :users) n) s"
                ),
                {"users": users},
            )
            await conn.execute(
                text(
                    "INSERT INTO email_digest_queue (id, user_id, event_type, event_id, event_data,"
                    " title, frequency, scheduled_for, included_in_digest)"
                    " SELECT gen_random_uuid(), u.user_id,"
                    " (ARRAY['dataset_import.completed','dataset_generation.completed',"
                    "'experiment.completed'])[i % 3 + 1], gen_random_uuid()::text, '{}'::jsonb,"
                    " 'Dataset import \"plant ' || i || '\" completed (450 signals)', 'daily',"
                    " :due, false FROM users u CROSS JOIN generate_series(1, :items) i"
                    " WHERE u.username LIKE 'user%'"
                ),
                {"items": items, "due": now - timedelta(minutes=1)},
            )
    finally:
        await engine.dispose()


async def bench_digests(
    admin_url: str, settings: Settings, users: int, items: int, batch: int
) -> None:
    now = datetime.now(UTC)
    batched = settings.model_copy(update={"digest_batch_users": batch})
    for schedulers in (1, 2):
        url = await provision(admin_url)
        await seed_digests(url, users, items, now)
        engines = [create_engine(url, pool_size=1) for _ in range(schedulers)]

        async def scheduler(engine: Any) -> int:
            sessionmaker = create_sessionmaker(engine, schema="notifications")
            built = 0
            while True:
                run = await schedule_due_digests(sessionmaker, settings=batched, clock=lambda: now)
                built += run.digests
                if run.items == 0:
                    return built

        started = time.perf_counter()
        built = sum(await asyncio.gather(*(scheduler(e) for e in engines)))
        elapsed = time.perf_counter() - started
        check = engines[0]
        async with check.connect() as conn:
            pending = (
                await conn.execute(
                    text(
                        "SELECT count(*) FROM notifications.email_digest_queue"
                        " WHERE NOT included_in_digest"
                    )
                )
            ).scalar_one()
            digests = (
                await conn.execute(
                    text(
                        "SELECT count(*), count(DISTINCT user_id) FROM notifications.email_logs"
                        " WHERE template_name = 'digest'"
                    )
                )
            ).one()
        for engine in engines:
            await engine.dispose()
        print(
            f"digest build, {schedulers} scheduler(s): {users:,} users x {items} items in "
            f"{elapsed:.2f}s = {users / elapsed:,.0f} digests/s (built {built}, stored "
            f"{digests[0]} for {digests[1]} users, {pending} items left)"
        )


async def main(args: argparse.Namespace) -> None:
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}"
    )
    configure_logging(service="notifications", level=args.log_level, json=True)
    with local_infrastructure() as (admin_url, _bootstrap):
        port = free_port()
        sink = start_smtp_sink(port)
        try:
            url = await provision(admin_url)
            settings = Settings(
                environment="test",
                database_url=url,
                smtp_url=f"smtp://127.0.0.1:{port}",
                email_batch_size=50,
            )
            await bench_emails(url, settings, args.emails, args.senders)
            if args.users:
                await bench_digests(admin_url, settings, args.users, args.items, args.batch)
        finally:
            sink.terminate()
            sink.wait(timeout=10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--emails", type=int, default=1000)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--items", type=int, default=3)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--log-level", default="INFO", help="the service's log level")
    asyncio.run(main(parser.parse_args()))
