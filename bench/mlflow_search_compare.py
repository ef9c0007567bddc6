"""``POST /api/2.0/mlflow/runs/search``: Runyard through the gateway over 100,000 runs versus the
MLflow 3 tracking server over 2,000 runs, the same requests on both.

The issue's goal: Runyard's ``search_runs`` over 100,000 runs answers faster than MLflow's over
2,000. One run on this machine:

1. Sets up as ``bench/mlflow_compare.py`` does (its helpers): the pinned MLflow in its own
   virtualenv, the whole Runyard stack (``Stack.isolated``), ``mlflow server`` on a database
   ``mlflow`` of the same PostgreSQL server, one uvicorn worker; waits until all are idle.
2. Creates an MLflow experiment on each (Runyard: ``/api/2.0/mlflow/experiments/create`` through
   the gateway, as a registered user with a bearer token).
3. Fills MLflow through its REST API (``runs/create`` with a ``team`` tag, then one ``log-batch``
   of 3 params and 4 metrics), --mlflow-runs runs (2,000), 8 clients at once; MLflow's own code
   writes its tables. Fills Runyard with --runyard-runs runs (100,000) of the one user: one run
   made the same way through Runyard's MLflow API is the template, then ``INSERT ... SELECT
   generate_series`` copies its ``experiments.experiments`` row (every column the API wrote;
   new id, name, times, params, latest metrics, tags) and writes the rows the API writes for
   logged metrics that search reads or MLflow's history needs (``mlflow_latest_metrics``,
   ``mlflow_metrics``). Runyard's own epoch rows (``training_runs``, ``history_blocks``) are
   left out: search does not read them. Both databases get ``VACUUM (ANALYZE)`` after.
   Param, metric and tag values are the same function of the run's number on both sides.
4. Times each search (``SEARCHES``) on both, in blocks of --repeat requests after a warm-up,
   who goes first alternating per search; median/p95 latency and the server-side CPU per
   search (psutil per process tree: Runyard's gateway, experiments, auth and its PostgreSQL
   backends; MLflow's uvicorn worker and its PostgreSQL backends, closed connections too).
5. Stops everything it started, also on error or Ctrl-C.

Usage: uv run python bench/mlflow_search_compare.py [--runyard-runs 100000] [--mlflow-runs 2000]
       [--repeat 10] [--json results.json] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import uuid
from typing import Any

import aiohttp
import asyncpg
from mlflow_compare import (
    CLIENT,
    EXITED_BACKENDS,
    MLFLOW_DATABASE,
    BenchError,
    CpuMeter,
    Mlflow,
    MlflowServer,
    Runyard,
    add_setup_arguments,
    request_json,
    run_cli,
    wait_for_mlflow,
    with_stack_and_mlflow,
)

from runyard.devstack import Stack
from runyard.shared.db import asyncpg_dsn

RUNYARD_DATABASE = "runyard"
OPTIMIZERS = ("adam", "adamw", "sgd")
LEARNING_RATES = ("0.0001", "0.001", "0.01")
BATCH_SIZES = ("32", "64", "128")
TEAMS = ("vision", "audio", "nlp")
#: metric -> (multiplier, offset, scale): value = offset + scale * ((n * multiplier) % 10007) / 10007
METRIC_FORMULAS = {
    "train_loss": (104729, 0.0, 1.0),
    "val_loss": (7919, 0.0, 1.0),
    "train_accuracy": (15485863, 0.5, 0.5),
    "val_accuracy": (1299709, 0.5, 0.5),
}
MODULUS = 10007
START_MS = 1_767_225_600_000  # 2026-01-01; run n started n seconds later

#: (label, filter, order_by, max_results)
SEARCHES: list[tuple[str, str | None, list[str], int]] = [
    (f"{label}, max_results {limit}", filter, order_by, limit)
    for limit in (100, 1000)
    for label, filter, order_by in (
        ("no filter", None, []),
        ("metrics.val_loss < 0.5", "metrics.val_loss < 0.5", []),
        (
            "params.optimizer = 'adam' and metrics.val_accuracy > 0.9",
            "params.optimizer = 'adam' and metrics.val_accuracy > 0.9",
            [],
        ),
        ("order_by metrics.val_loss ASC", None, ["metrics.val_loss ASC"]),
    )
]

#: the CPU groups of ``CpuMeter`` that serve each side's searches
SERVER_GROUPS = {
    "Runyard": (
        "Runyard gateway",
        "Runyard experiments",
        "Runyard auth",
        "PostgreSQL backends of the runyard db",
    ),
    "MLflow": ("MLflow server (uvicorn)", "PostgreSQL backends of the mlflow db", EXITED_BACKENDS),
}


def params_of(n: int) -> dict[str, str]:
    return {
        "optimizer": OPTIMIZERS[n % 3],
        "lr": LEARNING_RATES[(n // 3) % 3],
        "batch_size": BATCH_SIZES[(n // 9) % 3],
    }


def metric_values(n: int) -> dict[str, float]:
    return {
        key: offset + scale * ((n * multiplier) % MODULUS) / MODULUS
        for key, (multiplier, offset, scale) in METRIC_FORMULAS.items()
    }


def run_name(n: int) -> str:
    return f"run-{n:06d}"


# --- filling -------------------------------------------------------------------------------------


async def make_run(side: Mlflow, n: int) -> str:
    """Run ``n`` through the MLflow REST API: created with its tag, then one log-batch."""
    headers = await side.headers()
    body = await request_json(
        side.session,
        "POST",
        f"{side.base}/api/2.0/mlflow/runs/create",
        json={
            "experiment_id": side.experiment_id,
            "run_name": run_name(n),
            "start_time": START_MS + n * 1000,
            "tags": [{"key": "team", "value": TEAMS[n % 3]}],
        },
        headers=headers,
        expect=(200,),
    )
    run_id = str(body["run"]["info"]["run_id"])
    await request_json(
        side.session,
        "POST",
        f"{side.base}/api/2.0/mlflow/runs/log-batch",
        json={
            "run_id": run_id,
            "params": [{"key": k, "value": v} for k, v in params_of(n).items()],
            "metrics": [
                {"key": k, "value": v, "timestamp": START_MS + n * 1000 + 500, "step": 0}
                for k, v in metric_values(n).items()
            ],
        },
        headers=headers,
        expect=(200,),
    )
    return run_id


async def fill_mlflow(side: Mlflow, runs: int, clients: int = 8) -> float:
    started = time.perf_counter()
    numbers = iter(range(1, runs + 1))

    async def client() -> None:
        for n in numbers:
            await make_run(side, n)

    await asyncio.gather(*(client() for _ in range(clients)))
    return time.perf_counter() - started


def metric_sql(key: str) -> str:
    multiplier, offset, scale = METRIC_FORMULAS[key]
    return f"({offset} + {scale} * ((n::bigint * {multiplier}) % {MODULUS})::float8 / {MODULUS})"


def choice_sql(values: tuple[str, ...], index: str) -> str:
    return "(ARRAY[" + ", ".join(f"'{v}'" for v in values) + f"])[1 + {index}]"


def copy_overrides() -> dict[str, str]:
    """The columns of the template's row each copy gets its own value for (``t``: the template,
    ``n``: the run's number)."""
    started = f"to_timestamp(({START_MS} + n::bigint * 1000) / 1000.0)"
    params = ", ".join(
        f"'{key}', {choice_sql(values, index)}"
        for key, values, index in (
            ("optimizer", OPTIMIZERS, "n % 3"),
            ("lr", LEARNING_RATES, "(n / 3) % 3"),
            ("batch_size", BATCH_SIZES, "(n / 9) % 3"),
        )
    )
    metrics = ", ".join(f"'{key}', {metric_sql(key)}" for key in METRIC_FORMULAS)
    return {
        "id": "gen_random_uuid()",
        "name": "'run-' || lpad(n::text, 6, '0')",
        "hyperparameters": f"jsonb_build_object({params})",
        "metrics": f"jsonb_build_object({metrics})",
        "kv_tags": (
            "t.kv_tags || jsonb_build_object('mlflow.runName', 'run-' || lpad(n::text, 6, '0'),"
            f" 'team', {choice_sql(TEAMS, 'n % 3')})"
        ),
        "created_at": started,
        "updated_at": started,
        "started_at": started,
    }


async def fill_runyard(admin_server_url: str, template_run_id: str, runs: int) -> float:
    """``runs`` copies of the template run (its id is a Runyard experiment's uuid), numbered
    1..runs; the template's own metric rows give the shape of the copies' ones."""
    template = uuid.UUID(template_run_id)
    conn = await asyncpg.connect(asyncpg_dsn(admin_server_url), database=RUNYARD_DATABASE)
    started = time.perf_counter()
    try:
        columns = [
            row["column_name"]
            for row in await conn.fetch(
                "SELECT column_name FROM information_schema.columns WHERE table_schema ="
                " 'experiments' AND table_name = 'experiments' AND is_generated = 'NEVER'"
                " ORDER BY ordinal_position"
            )
        ]
        overrides = copy_overrides()
        values = ", ".join(overrides.get(c, f"t.{c}") for c in columns)
        async with conn.transaction():
            await conn.execute(
                f"INSERT INTO experiments.experiments ({', '.join(columns)})"
                f" SELECT {values} FROM experiments.experiments t,"
                " generate_series(1, $2::int) AS n WHERE t.id = $1",
                template,
                runs,
            )
            copies = (
                "FROM experiments.experiments e, jsonb_each_text(e.metrics) AS m"
                " WHERE e.project_id = (SELECT project_id FROM experiments.experiments"
                " WHERE id = $1) AND e.id <> $1"
            )
            timestamp = "(extract(epoch FROM e.started_at) * 1000)::bigint + 500"
            for table in ("mlflow_latest_metrics", "mlflow_metrics"):
                await conn.execute(
                    f"INSERT INTO experiments.{table} (experiment_id, key, step, timestamp, value)"
                    f" SELECT e.id, m.key, 0, {timestamp}, m.value::float8 {copies}",
                    template,
                )
        await conn.execute("VACUUM (ANALYZE) experiments.experiments")
        await conn.execute("VACUUM (ANALYZE) experiments.mlflow_latest_metrics")
        await conn.execute("VACUUM (ANALYZE) experiments.mlflow_metrics")
    finally:
        await conn.close()
    return time.perf_counter() - started


async def vacuum_mlflow(admin_server_url: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(admin_server_url), database=MLFLOW_DATABASE)
    try:
        await conn.execute("VACUUM (ANALYZE)")
    finally:
        await conn.close()


async def template_row(admin_server_url: str, run_id: str) -> dict[str, Any]:
    """The template's row as the API wrote it, for the report."""
    conn = await asyncpg.connect(asyncpg_dsn(admin_server_url), database=RUNYARD_DATABASE)
    try:
        row = await conn.fetchrow(
            "SELECT status, hyperparameters, metrics, kv_tags, project_id, owner_id"
            " FROM experiments.experiments WHERE id = $1",
            uuid.UUID(run_id),
        )
        latest = await conn.fetchval(
            "SELECT count(*) FROM experiments.mlflow_latest_metrics WHERE experiment_id = $1",
            uuid.UUID(run_id),
        )
    finally:
        await conn.close()
    if row is None:
        raise BenchError(f"template run {run_id} not in experiments.experiments")
    return {**{k: str(v) for k, v in dict(row).items()}, "mlflow_latest_metrics": latest}


# --- searching -----------------------------------------------------------------------------------


async def search_once(side: Mlflow, body: dict[str, Any]) -> tuple[float, int]:
    headers = await side.headers()
    started = time.perf_counter()
    async with side.session.post(
        f"{side.base}/api/2.0/mlflow/runs/search", json=body, headers=headers
    ) as response:
        raw = await response.read()
        took = (time.perf_counter() - started) * 1000
        if response.status != 200:
            raise BenchError(f"{side.label} search -> {response.status}: {raw[:300]!r}")
    return took, len(json.loads(raw).get("runs", []))


async def search_block(
    side: Mlflow, body: dict[str, Any], repeat: int, meter: CpuMeter
) -> dict[str, Any]:
    await search_once(side, body)  # warm-up
    latencies: list[float] = []
    found = 0
    await meter.start()
    for _ in range(repeat):
        took, found = await search_once(side, body)
        latencies.append(took)
    cpu, _wall, _ = await meter.stop()
    server_cpu = sum(cpu[g] for g in SERVER_GROUPS[side.label]) * 1000 / repeat
    cuts = statistics.quantiles(latencies, n=20, method="inclusive")
    return {
        "rows": found,
        "p50_ms": statistics.median(latencies),
        "p95_ms": cuts[18],
        "min_ms": min(latencies),
        "server_cpu_ms": server_cpu,
        "client_cpu_ms": cpu[CLIENT] * 1000 / repeat,
    }


async def searches(
    sides: list[Mlflow], repeat: int, meter: CpuMeter
) -> dict[str, dict[str, dict[str, Any]]]:
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for i, (label, filter, order_by, limit) in enumerate(SEARCHES):
        results[label] = {}
        for side in sides if i % 2 == 0 else sides[::-1]:
            body: dict[str, Any] = {
                "experiment_ids": [side.experiment_id],
                "max_results": limit,
                "run_view_type": "ACTIVE_ONLY",
                "order_by": order_by,
            }
            if filter:
                body["filter"] = filter
            results[label][side.label] = await search_block(side, body, repeat, meter)
        r, m = results[label]["Runyard"], results[label]["MLflow"]
        print(
            f"  {label}: Runyard p50 {r['p50_ms']:.1f} ms ({r['rows']} rows), "
            f"MLflow p50 {m['p50_ms']:.1f} ms ({m['rows']} rows)",
            flush=True,
        )
    return results


# --- report and main -----------------------------------------------------------------------------


def report(results: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        f"| search (POST /api/2.0/mlflow/runs/search, median of {args.repeat}) | Runyard, "
        f"{args.runyard_runs:,} runs: p50 / p95 | MLflow {results['mlflow_version']}, "
        f"{args.mlflow_runs:,} runs: p50 / p95 | Runyard / MLflow (p50) | rows returned "
        "(Runyard / MLflow) | server CPU per search, ms (Runyard / MLflow) |",
        "|---|---|---|---|---|---|",
    ]
    for label, by in results["searches"].items():
        r, m = by["Runyard"], by["MLflow"]
        lines.append(
            f"| {label} | {r['p50_ms']:.1f} / {r['p95_ms']:.1f} ms | "
            f"{m['p50_ms']:.1f} / {m['p95_ms']:.1f} ms | {r['p50_ms'] / m['p50_ms']:.2f}x | "
            f"{r['rows']} / {m['rows']} | {r['server_cpu_ms']:.1f} / {m['server_cpu_ms']:.1f} |"
        )
    return "\n".join(lines)


async def bench(args: argparse.Namespace, stack: Stack, server: MlflowServer) -> dict[str, Any]:
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    # a connection idles while the other system answers a block of searches: give it up before
    # uvicorn does (5 s), or a request may race the server's close (ServerDisconnectedError)
    connector = aiohttp.TCPConnector(limit=16, keepalive_timeout=3.0)
    results: dict[str, Any] = {}
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        results["mlflow_start_s"] = await wait_for_mlflow(server, session, args.mlflow_timeout)
        print(f"[setup] MLflow server healthy after {results['mlflow_start_s']:.1f} s", flush=True)
        meter = CpuMeter(stack, server.proc.pid, asyncpg_dsn(stack.admin_server_url))
        runyard = Runyard(session, stack.gateway_url)
        await runyard.register()
        await runyard.login()
        sides = [
            Mlflow(session, stack.gateway_url, "Runyard", auth=runyard),
            Mlflow(session, server.url, "MLflow"),
        ]
        for side in sides:
            await side.create_experiment()
        # MLflow's job runner keeps a core busy for a minute after /health: fill after it
        await meter.settle(quiet_cores=args.quiet_cores, window_s=5.0, limit_s=args.mlflow_timeout)
        seconds = await fill_mlflow(sides[1], args.mlflow_runs)
        print(f"[fill] MLflow: {args.mlflow_runs:,} runs in {seconds:.1f} s (REST API)", flush=True)
        template = await make_run(sides[0], 0)
        results["template"] = await template_row(stack.admin_server_url, template)
        print(f"[fill] Runyard template run (MLflow API): {results['template']}", flush=True)
        seconds = await fill_runyard(stack.admin_server_url, template, args.runyard_runs)
        print(f"[fill] Runyard: {args.runyard_runs:,} runs in {seconds:.1f} s (SQL)", flush=True)
        await vacuum_mlflow(stack.admin_server_url)
        results["settle_s"] = await meter.settle(
            quiet_cores=args.quiet_cores, window_s=5.0, limit_s=args.mlflow_timeout
        )
        results["load_average_searching"] = [round(x, 2) for x in os.getloadavg()]
        print(f"[run] {len(SEARCHES)} searches x {args.repeat} on each", flush=True)
        results["searches"] = await searches(sides, args.repeat, meter)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runyard-runs", type=int, default=100_000)
    parser.add_argument("--mlflow-runs", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=10, help="timed searches per block")
    add_setup_arguments(parser, timeout=120.0)
    args = parser.parse_args()
    results = with_stack_and_mlflow("mlflow_search_compare.py", args, bench)
    print(f"load average when the searches started: {results['load_average_searching']}\n")
    print(report(results, args))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    run_cli(main)
