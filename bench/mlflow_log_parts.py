"""What each part of an MLflow ``log-batch`` costs PostgreSQL on the SQL path, under load.

Starts the whole local stack, then, with 4 clients each logging one epoch (4 metrics) per
``log-batch`` to its own running run, for ``--seconds`` per phase: replaces the database
function ``mlflow_log_epochs`` (migration 0019) by a variant without one of its parts
(the history summary, its levels above 0, the run row's update, the metric log, the epoch rows,
all of Runyard's own rows: only MLflow's metric log and latest metrics and the pending event
row are left) or with the run row's update made HOT (the indexes over ``experiments.metrics``
dropped for the phase), or with the history summary and the run row's update left to a folder
that writes them for each run every 0.25 s (``FOLDED``: a prototype of ADR 0020's session-18
design, run by this process on a connection counted with the service's), and measures requests/s and the CPU of the experiments service's
PostgreSQL backends per request (psutil, per backend process by ``application_name``). A variant
answers wrongly on purpose (the part is missing): the stack is thrown away after.

The variants run in ``--rounds`` rounds, each in another order (rotated, every other round
reversed), and the summary gives each variant's median over its rounds: on a shared machine
the load drifts by more than most parts cost, and a fixed order showed a part up to 40 %
cheaper than alternated phases did. ``--only NAME`` (repeatable; the full function always runs)
picks variants by a part of their name.

Each client logs its run's consecutive steps, as a training loop does. Also prints, for the
full function: the WAL written per request (records, bytes, full-page images), inserted and (HOT) updated
rows per table, and the mean time a request spends in the experiments service (its latency
histogram) against the client's.

    uv run python bench/mlflow_log_parts.py [--seconds 8] [--rounds 3] [--only HOT ...]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import shlex
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import asyncpg
import psutil
from mlflow_compare import UNLIMITED, machine_info, run_cli, runyard_mlflow_user
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from runyard.devstack import Stack
from runyard.experiments.tracking.repository.history import BASE_SHIFT, record_runs
from runyard.shared.db import asyncpg_dsn

MIGRATIONS = (
    Path(__file__).resolve().parent.parent
    / "services/experiments/src/runyard/experiments/migrations/versions"
)
CLIENTS = 4


def _migration(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"migration_{name}", MIGRATIONS / name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: the indexes over ``experiments.metrics`` (they make the run row's update never HOT), kept
#: aside while the HOT variant runs and made again for the others
_SAVE_METRIC_INDEXES = """
CREATE TABLE IF NOT EXISTS public.bench_metric_indexes AS
SELECT indexname, indexdef FROM pg_indexes
WHERE schemaname = 'experiments' AND tablename = 'experiments' AND indexdef LIKE '%metrics%';
"""
_DROP_METRIC_INDEXES = (
    _SAVE_METRIC_INDEXES
    + """
DO $$DECLARE r record; BEGIN
  FOR r IN SELECT indexname FROM public.bench_metric_indexes LOOP
    EXECUTE 'DROP INDEX IF EXISTS experiments.' || quote_ident(r.indexname);
  END LOOP;
END$$;
"""
)
_MAKE_METRIC_INDEXES = (
    _SAVE_METRIC_INDEXES
    + """
DO $$DECLARE r record; BEGIN
  FOR r IN SELECT indexname, indexdef FROM public.bench_metric_indexes LOOP
    IF to_regclass('experiments.' || quote_ident(r.indexname)) IS NULL THEN
      EXECUTE r.indexdef;
    END IF;
  END LOOP;
END$$;
"""
)


def variants() -> dict[str, str]:
    """Each variant's SQL: the function (and, for HOT, the metric indexes dropped; for the
    others, made again)."""
    full: str = _migration("0019_mlflow_log_metrics_at_logged_epochs.py").LOG_EPOCHS

    def without(sql: str, first: str, next_part: str) -> str:
        start = sql.index(first)
        end = sql.index(next_part, start)
        return sql[:start] + "    skipped AS (SELECT 1),\n" + sql[end:]

    no_run_update = full.replace(
        "        WHERE x.id = p_run\n", "        WHERE x.id = p_run AND false\n"
    )
    functions = {
        "full": full,
        "without the history summary": without(
            full, "    base AS (", "    -- the metrics of the request's highest"
        ),
        "history level 0 only": full.replace("(VALUES (0), (4))", "(VALUES (0))").replace(
            "generate_series(1, 3)", "generate_series(1, 0)"
        ),
        "without the run row's update": no_run_update,
        "without the metric log": without(full, "    logged AS (", "    -- the request's values"),
        "without the epoch rows": without(full, "    runs AS (", "    -- the history summary"),
        "without the history summary and the run row's update": without(
            no_run_update, "    base AS (", "    -- the metrics of the request's highest"
        ),
        "MLflow's rows only": without(
            no_run_update, "    runs AS (", "    -- the metrics of the request's highest"
        ),
    }
    made = {name: _MAKE_METRIC_INDEXES + sql for name, sql in functions.items()}
    made["run row's update HOT"] = _DROP_METRIC_INDEXES + full
    made[FOLDED] = made["without the history summary and the run row's update"]
    return made


#: the variant whose summaries ``fold_loop`` writes while it runs
FOLDED = "summaries folded every 0.25 s (prototype)"
#: the folder's database sessions count as the experiments service's backends
FOLD_APPLICATION = "runyard-experiments-fold"
#: one fold of a run's epochs ``lo``..``hi`` into its row (totals, the highest epoch's metrics,
#: the best of the range by the run's best metric): what the per-request update does, once
_FOLD_RUN = text("""
WITH top AS (
    SELECT jsonb_strip_nulls(jsonb_build_object(
               'train_loss', t.train_loss, 'val_loss', t.val_loss,
               'train_accuracy', t.train_accuracy, 'val_accuracy', t.val_accuracy,
               'learning_rate', t.learning_rate)) || t.metrics AS metrics
    FROM experiments.training_runs AS t
    WHERE t.experiment_id = :run AND t.epoch = :hi
),
best AS (
    SELECT t.epoch, experiments.jsonb_number(to_jsonb(t), x.best_metric) AS v
    FROM experiments.training_runs AS t, experiments.experiments AS x
    WHERE x.id = :run AND t.experiment_id = :run AND t.epoch BETWEEN :lo AND :hi
      AND experiments.jsonb_number(to_jsonb(t), x.best_metric) IS NOT NULL
    ORDER BY 2, 1 LIMIT 1
)
UPDATE experiments.experiments AS x SET
    total_epochs = x.total_epochs + (:hi - :lo + 1),
    last_epoch = greatest(x.last_epoch, :hi),
    metrics = x.metrics || coalesce((SELECT metrics FROM top), '{}'),
    best_epoch = coalesce((SELECT epoch FROM best), x.best_epoch),
    best_value = coalesce((SELECT v FROM best), x.best_value),
    last_seen_at = now(), updated_at = now()
WHERE x.id = :run
""")


async def fold_loop(
    sessions: async_sessionmaker[AsyncSession], runs: list[uuid.UUID], stop_at: float
) -> int:
    """Until ``stop_at``: every 0.25 s, each run's epochs since its last fold written into its
    row and its history blocks (``record_runs``' exact rebuild of the blocks written and of the
    old tail's), in one transaction per run, as the epoch-events worker would. Folds made."""
    folded: dict[uuid.UUID, int | None] = {}
    async with sessions() as session:
        for run in runs:
            folded[run] = await session.scalar(
                text("SELECT max(epoch) FROM experiments.training_runs WHERE experiment_id = :r"),
                {"r": run},
            )
    made = 0
    while time.monotonic() < stop_at:
        began = time.monotonic()
        for run in runs:
            async with sessions() as session, session.begin():
                await session.execute(
                    text("SELECT 1 FROM experiments.experiments WHERE id = :r FOR UPDATE"),
                    {"r": run},
                )
                high = await session.scalar(
                    text(
                        "SELECT max(epoch) FROM experiments.training_runs WHERE experiment_id = :r"
                    ),
                    {"r": run},
                )
                last = folded[run]
                if high is None or (last is not None and high <= last):
                    continue
                low = 0 if last is None else last + 1
                await session.execute(_FOLD_RUN, {"run": run, "lo": low, "hi": high})
                blocks = set(range(low >> BASE_SHIFT, (high >> BASE_SHIFT) + 1))
                if last is not None:
                    blocks.add(last >> BASE_SHIFT)  # the old tail's coarser blocks
                await record_runs(
                    session, run, inserted=(), rewritten=[b << BASE_SHIFT for b in sorted(blocks)]
                )
                folded[run] = high
                made += 1
        await asyncio.sleep(max(0.0, 0.25 - (time.monotonic() - began)))
    return made


def round_order(names: list[str], round_: int) -> list[str]:
    """Round ``round_``'s order: rotated by the round, every other round reversed."""
    shift = round_ % len(names)
    order = names[shift:] + names[:shift]
    return order[::-1] if round_ % 2 else order


async def backend_cpu(admin: asyncpg.Connection, application: str) -> float:
    """CPU seconds used so far by the client backends of ``application``."""
    total = 0.0
    rows = await admin.fetch(
        "SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend'"
        " AND application_name LIKE $1",
        f"{application}%",
    )
    for row in rows:
        try:
            times = psutil.Process(row["pid"]).cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def histogram(text: str, path_part: str) -> tuple[float, float]:
    """(sum, count) of the service's request latency histogram over routes with ``path_part``."""
    total = count = 0.0
    for line in text.splitlines():
        if path_part not in line or not line.startswith("runyard_http_request_duration_seconds"):
            continue
        value = float(line.rsplit(" ", 1)[1])
        if line.startswith("runyard_http_request_duration_seconds_sum"):
            total += value
        elif line.startswith("runyard_http_request_duration_seconds_count"):
            count += value
    return total, count


async def bench(args: argparse.Namespace, stack: Stack) -> None:
    connector = aiohttp.TCPConnector(limit=16)
    async with aiohttp.ClientSession(connector=connector) as session:
        _runyard, mlflow, headers = await runyard_mlflow_user(session, stack.gateway_url)
        runs = [await mlflow.new_target(f"parts-{i}") for i in range(CLIENTS)]
        # each run's own next step, as a training loop sends them (consecutive epochs)
        steps = dict.fromkeys(runs, 0)
        for run in runs:  # each run running, warm
            for _ in range(30):
                steps[run] += 1
                await mlflow.epoch_request(run, steps[run], headers)()
        admin = await asyncpg.connect(asyncpg_dsn(stack.admin_server_url))
        database = await asyncpg.connect(stack.admin_dsn)
        experiments_url = stack.service_urls["experiments"] + "/metrics"
        engine = create_async_engine(
            "postgresql+asyncpg://" + stack.admin_dsn.split("://", 1)[1],
            connect_args={"server_settings": {"application_name": FOLD_APPLICATION}},
        )
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        run_ids = [uuid.UUID(run) for run in runs]
        chosen = {
            name: sql
            for name, sql in variants().items()
            if name == "full" or not args.only or any(part in name for part in args.only)
        }
        measured: dict[str, list[tuple[float, float]]] = {name: [] for name in chosen}
        print("| round | function | requests/s | PostgreSQL (experiments), ms per request |")
        print("|---|---|---|---|")
        for round_, name in (
            (r, name) for r in range(args.rounds) for name in round_order(list(chosen), r)
        ):
            await database.execute(chosen[name])
            await asyncio.sleep(1)
            cpu_before = await backend_cpu(admin, "runyard-experiments")
            wal_before = await database.fetchrow(WAL_STATS)
            tables_before = await database.fetch(TABLE_STATS)
            async with session.get(experiments_url) as response:
                metrics_before = await response.text()
            latencies: list[float] = []
            stop_at = time.monotonic() + args.seconds

            async def client(run: str, stop_at: float, latencies: list[float]) -> None:
                while time.monotonic() < stop_at:
                    steps[run] += 1
                    started = time.perf_counter()
                    await mlflow.epoch_request(run, steps[run], headers)()
                    latencies.append(time.perf_counter() - started)

            folder = (
                asyncio.create_task(fold_loop(sessions, run_ids, stop_at))
                if name == FOLDED
                else None
            )
            await asyncio.gather(*(client(run, stop_at, latencies) for run in runs))
            if folder is not None:
                await folder
            cpu = await backend_cpu(admin, "runyard-experiments") - cpu_before
            count = len(latencies)
            rate, pg_ms = count / args.seconds, cpu * 1000 / count
            measured[name].append((rate, pg_ms))
            print(f"| {round_ + 1} | {name} | {rate:.0f} | {pg_ms:.2f} |", flush=True)
            if name != "full" or round_ != 0:
                continue
            wal_after = await database.fetchrow(WAL_STATS)
            records, images, wal = (
                float(wal_after[k] - wal_before[k]) for k in ("records", "fpi", "bytes")
            )
            async with session.get(experiments_url) as response:
                metrics_after = await response.text()
            spent = [
                a - b
                for a, b in zip(
                    histogram(metrics_after, "log-batch"),
                    histogram(metrics_before, "log-batch"),
                    strict=True,
                )
            ]
            await asyncio.sleep(1)  # table statistics are reported when a transaction ends
            details = [
                f"  WAL per request: {records / count:.1f} records, {wal / count:,.0f} bytes,"
                f" {images / count:.4f} full-page images",
                f"  mean latency: client {sum(latencies) / count * 1000:.1f} ms, in the "
                f"experiments service {spent[0] / max(spent[1], 1) * 1000:.1f} ms",
            ]
            before = {row["relname"]: row for row in tables_before}
            for row in await database.fetch(TABLE_STATS):
                old = before.get(row["relname"])
                if old is None:
                    continue
                inserted = row["n_tup_ins"] - old["n_tup_ins"]
                updated = row["n_tup_upd"] - old["n_tup_upd"]
                hot = row["n_tup_hot_upd"] - old["n_tup_hot_upd"]
                if inserted or updated:
                    details.append(
                        f"  {row['relname']}: {inserted / count:.2f} inserted, "
                        f"{updated / count:.2f} updated ({hot / count:.2f} HOT) per request"
                    )
            print("\n".join(details), flush=True)
        print(f"\nmedians over {args.rounds} round(s), each variant against the full function:")
        print(
            "| function | requests/s | PostgreSQL (experiments), ms per request | difference, ms |"
        )
        print("|---|---|---|---|")
        full_ms = statistics.median(ms for _, ms in measured["full"])
        for name, phases in measured.items():
            rate = statistics.median(r for r, _ in phases)
            pg_ms = statistics.median(ms for _, ms in phases)
            print(f"| {name} | {rate:.0f} | {pg_ms:.2f} | {pg_ms - full_ms:+.2f} |")
        await admin.close()
        await database.close()
        await engine.dispose()


#: WAL written so far, by every process of the cluster (nothing else writes during a variant)
WAL_STATS = "SELECT wal_records AS records, wal_fpi AS fpi, wal_bytes AS bytes FROM pg_stat_wal"
TABLE_STATS = (
    "SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables"
    " WHERE schemaname = 'experiments'"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="per phase")
    parser.add_argument("--rounds", type=int, default=3, help="each variant once per round")
    parser.add_argument(
        "--only", action="append", default=[], help="variants whose name holds this (repeatable)"
    )
    args = parser.parse_args()
    info: dict[str, Any] = machine_info()
    print(f"command: uv run python bench/mlflow_log_parts.py {shlex.join(sys.argv[1:])}")
    print(f"machine: {info}; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC", flush=True)
    with (
        tempfile.TemporaryDirectory(prefix="log-parts-") as directory,
        Stack.isolated(Path(directory), extra_env=UNLIMITED) as stack,
    ):
        asyncio.run(bench(args, stack))


if __name__ == "__main__":
    run_cli(main)
