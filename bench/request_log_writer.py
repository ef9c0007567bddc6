"""The gateway's request-log writer: CPU per logged request, in the gateway and in PostgreSQL.

Every ``/api/v1`` and MLflow request the gateway serves becomes an ``api_request_logs`` row and,
when it changes state for an identified caller, a ``system_logs`` row, written in batches by
``runyard.gateway.requestlog.RequestLogWriter`` (a 4-client MLflow training loop: about 650 of
each a second). This bench starts an embedded PostgreSQL with the gateway's schema migrated, then
writes batches of records shaped like an MLflow ``log-batch`` (4 metrics, a bearer-token user),
in alternating rounds of two ways:

- ``writer``: ``RequestLogWriter.flush`` as it is (rows built and redacted, then ``COPY``);
- ``insert``: the same rows built the same way, then written as the writer did before
  (SQLAlchemy's many-row ``INSERT`` through the session), for comparison.

and, on their own, the rows built from the records (``Texts``, ``log_row``, ``audit_row``: the
redaction of both payload samples included). Prints per variant the CPU of this process and of
PostgreSQL's backends per logged request (psutil), the minimum and the median over the rounds:
on a shared machine the minimum is the least disturbed figure.

    uv run python bench/request_log_writer.py [--rounds 7] [--batches 20] [--batch-size 500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import psutil
from mlflow_compare import machine_info, run_cli
from mlflow_log_parts import backend_cpu
from sqlalchemy import insert

from runyard.gateway.models import api_request_logs, system_logs
from runyard.gateway.requestlog import (
    RequestLogWriter,
    RequestRecord,
    Texts,
    audit_row,
    is_audited,
    log_row,
)
from runyard.shared.db import asyncpg_dsn, create_engine, create_sessionmaker
from runyard.shared.identity import Principal
from runyard.shared.testing import local_infrastructure, migrated_database

PASSWORD = "bench-request-log"
#: the ``application_name`` of the writer's connections (``create_engine``'s default)
APPLICATION = "runyard"


def records(count: int) -> list[RequestRecord]:
    """``count`` records of MLflow ``log-batch`` requests (one epoch of 4 metrics) by a user with
    a bearer token, each with its own request id and run."""
    principal = Principal(
        user_id=uuid.uuid4(), role="user", username="bench", session_id=uuid.uuid4().hex
    )
    made = []
    for step in range(count):
        body = json.dumps(
            {
                "run_id": uuid.uuid4().hex,
                "metrics": [
                    {"key": key, "value": 0.5, "timestamp": 1_765_000_000_000, "step": step}
                    for key in ("train_loss", "val_loss", "train_accuracy", "val_accuracy")
                ],
            }
        ).encode()
        made.append(
            RequestRecord(
                request_id=uuid.uuid4().hex,
                request_time=datetime.now(UTC),
                method="POST",
                path="/api/2.0/mlflow/runs/log-batch",
                status=200,
                latency_ms=3.2,
                request_size=len(body),
                response_size=2,
                ip_address="127.0.0.1",
                user_agent="mlflow-python-client/3.17.2",
                service="experiments",
                principal=principal,
                request_sample=body,
                request_content_type="application/json",
                response_sample=b"{}",
                response_content_type="application/json",
            )
        )
    return made


def rows_of(batch: list[RequestRecord]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The request-log and audit rows of ``batch``, as ``RequestLogWriter.flush`` builds them."""
    texts = [Texts.of(r) for r in batch]
    logs = [log_row(r, t) for r, t in zip(batch, texts, strict=True)]
    audits = [audit_row(r, t) for r, t in zip(batch, texts, strict=True) if is_audited(r)]
    return logs, audits


def process_cpu() -> float:
    times = psutil.Process().cpu_times()
    return times.user + times.system


async def bench(args: argparse.Namespace, admin_url: str) -> None:
    name = f"bench_reqlog_{uuid.uuid4().hex[:8]}"
    url, database_admin_url = await migrated_database(
        admin_url, "runyard.gateway", "gateway", name=name, password=PASSWORD
    )
    engine = create_engine(url)
    sessionmaker = create_sessionmaker(engine, schema="gateway")
    writer = RequestLogWriter(
        sessionmaker, queue_size=1, batch_size=args.batch_size, flush_interval_s=1.0
    )
    admin = await asyncpg.connect(asyncpg_dsn(database_admin_url))

    async def insert_flush(batch: list[RequestRecord]) -> None:
        logs, audits = rows_of(batch)
        async with sessionmaker() as session, session.begin():
            await session.execute(insert(api_request_logs), logs)
            await session.execute(insert(system_logs), audits)

    async def build_only(batch: list[RequestRecord]) -> None:
        rows_of(batch)

    variants: dict[str, Callable[[list[RequestRecord]], Awaitable[None]]] = {
        "writer (COPY)": writer.flush,
        "many-row INSERT": insert_flush,
        "rows built only": build_only,
    }
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    try:
        for flush in variants.values():  # warm: connections, prepared statements, caches
            await flush(records(args.batch_size))
        for _ in range(args.rounds):
            for variant, flush in variants.items():
                batches = [records(args.batch_size) for _ in range(args.batches)]
                await admin.execute("CHECKPOINT")
                before, before_pg = process_cpu(), await backend_cpu(admin, APPLICATION)
                for batch in batches:
                    await flush(batch)
                after, after_pg = process_cpu(), await backend_cpu(admin, APPLICATION)
                logged = args.batches * args.batch_size
                results[variant].append(
                    ((after - before) * 1e6 / logged, (after_pg - before_pg) * 1e6 / logged)
                )
        written = await admin.fetchval("SELECT count(*) FROM gateway.api_request_logs")
    finally:
        await admin.close()
        await engine.dispose()
    print(f"\n{written} request-log rows written in all")
    print(
        "\n| variant | this process, us per request: min / median | PostgreSQL, us per"
        " request: min / median |"
    )
    print("|---|---|---|")
    for variant, figures in results.items():
        own = [f[0] for f in figures]
        pg = [f[1] for f in figures]
        print(
            f"| {variant} | {min(own):.1f} / {statistics.median(own):.1f}"
            f" | {min(pg):.1f} / {statistics.median(pg):.1f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batches", type=int, default=20, help="batches per round and variant")
    parser.add_argument("--batch-size", type=int, default=500, help="the gateway's default")
    args = parser.parse_args()
    print(f"command: uv run python bench/request_log_writer.py {shlex.join(sys.argv[1:])}")
    print(f"machine: {machine_info()}; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC", flush=True)
    started = time.monotonic()
    with local_infrastructure() as (admin_url, _bootstrap):
        asyncio.run(bench(args, admin_url))
    print(f"\n{time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    run_cli(main)
