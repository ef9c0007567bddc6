"""What one machine's Runyard stack can serve at most, request by request: the floor under
``bench/mlflow_compare.py``'s ``log-batch`` figure.

Starts the whole local stack (no MLflow server) and, with 4 clients on one keep-alive pool, for
``--seconds`` each:

1. ``GET /health`` of the gateway: the client and the gateway alone (no service, no database);
2. ``GET /api/2.0/mlflow/experiments/get``: the cheapest authenticated MLflow request, one
   read-only transaction of one row in the experiments service, through the gateway;
3. ``POST /api/2.0/mlflow/runs/log-batch`` of one epoch (4 metrics) to each client's own run, as
   ``bench/mlflow_compare.py`` sends it;
4. ``POST /api/2.0/mlflow/runs/log-metric``, MLflow's ``log_metric`` loop: one request per metric,
   the 4 metrics of an epoch in turn, to each client's own run.
5. phase 3 with an API key instead of an access token as the bearer (``MLFLOW_TRACKING_TOKEN``
   set to a key): each request also makes an ``api_key.used`` event, which the gateway publishes
   and the auth service records.

Prints requests per second and the CPU per request of every process group (psutil), so a goal
in requests per second can be set against what the stack's cheapest request costs.

    uv run python bench/mlflow_floor.py [--seconds 20] [--concurrency 4] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from mlflow_compare import (
    CLIENT,
    EXITED_BACKENDS,
    UNLIMITED,
    CpuMeter,
    machine_info,
    metrics_of,
    run_cli,
    runyard_mlflow_user,
)

from runyard.devstack import Stack
from runyard.shared.db import asyncpg_dsn

WARMUP = 50  # requests per client before each phase
#: Process groups of CpuMeter that are MLflow's (not running here)
MLFLOW_GROUPS = ("MLflow server (uvicorn)", "MLflow CLI, job runner, huey consumers")


async def phase(
    meter: CpuMeter,
    seconds: float,
    senders: list[Callable[[int], Awaitable[None]]],
) -> dict[str, Any]:
    """Each sender in a loop for ``seconds`` (after a warm-up); requests/s and CPU/request."""
    for send in senders:
        for n in range(WARMUP):
            await send(n)
    await asyncio.sleep(2)  # the warm-up's events go through before measuring
    count = 0
    stop_at = time.monotonic() + seconds

    async def client(send: Callable[[int], Awaitable[None]]) -> None:
        nonlocal count
        n = WARMUP
        while time.monotonic() < stop_at:
            await send(n)
            n += 1
            count += 1

    await meter.start()
    await asyncio.gather(*(client(send) for send in senders))
    used, wall, _ = await meter.stop()
    cpu_ms = {
        name: seconds_used * 1000 / count
        for name, seconds_used in used.items()
        if name not in MLFLOW_GROUPS and "mlflow db" not in name
    }
    return {
        "requests": count,
        "wall_s": wall,
        "requests_per_s": count / wall,
        "cpu_ms_per_request": cpu_ms,
        "cores": {name: ms * count / 1000 / wall for name, ms in cpu_ms.items()},
    }


async def bench(args: argparse.Namespace, stack: Stack) -> dict[str, Any]:
    timeout = aiohttp.ClientTimeout(total=60)
    connector = aiohttp.TCPConnector(limit=max(8, args.concurrency * 2), keepalive_timeout=60)
    results: dict[str, Any] = {}
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        meter = CpuMeter(stack, 0, asyncpg_dsn(stack.admin_server_url))
        await meter.settle(quiet_cores=0.3, window_s=5.0, limit_s=120.0)
        runyard, mlflow, headers = await runyard_mlflow_user(session, stack.gateway_url)
        base = stack.gateway_url
        key_headers = {"Authorization": f"Bearer {await runyard.new_api_key()}"}

        async def get(url: str, send_headers: dict[str, str] | None = None) -> None:
            async with session.get(url, headers=send_headers) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"GET {url} -> {response.status}")

        def health(_n: int) -> Awaitable[None]:
            return get(f"{base}/health")

        experiment_url = (
            f"{base}/api/2.0/mlflow/experiments/get?experiment_id={mlflow.experiment_id}"
        )

        def read(_n: int) -> Awaitable[None]:
            return get(experiment_url, headers)

        runs = [await mlflow.new_target(f"floor-{i}") for i in range(args.concurrency)]

        def batch_sender(
            run_id: str, send_headers: dict[str, str] = headers
        ) -> Callable[[int], Awaitable[None]]:
            def send(n: int) -> Awaitable[None]:
                return mlflow.epoch_request(run_id, n, send_headers)()

            return send

        metric_url = f"{base}/api/2.0/mlflow/runs/log-metric"

        def metric_sender(run_id: str) -> Callable[[int], Awaitable[None]]:
            """MLflow's ``log_metric`` loop: one request per metric, 4 per epoch."""

            async def send(n: int) -> None:
                key, value = list(metrics_of(n // 4).items())[n % 4]
                payload = {
                    "run_id": run_id,
                    "key": key,
                    "value": value,
                    "timestamp": int(time.time() * 1000),
                    "step": n // 4,
                }
                async with session.post(metric_url, json=payload, headers=headers) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"log-metric {n} -> {response.status}")

            return send

        metric_runs = [
            await mlflow.new_target(f"floor-metric-{i}") for i in range(args.concurrency)
        ]
        key_runs = [await mlflow.new_target(f"floor-key-{i}") for i in range(args.concurrency)]
        plan: list[tuple[str, list[Callable[[int], Awaitable[None]]]]] = [
            ("gateway GET /health", [health] * args.concurrency),
            ("MLflow experiments/get (one read)", [read] * args.concurrency),
            ("MLflow runs/log-batch (one epoch)", [batch_sender(run) for run in runs]),
            ("MLflow runs/log-metric (4 per epoch)", [metric_sender(run) for run in metric_runs]),
            (
                "MLflow runs/log-batch, API key",
                [batch_sender(run, key_headers) for run in key_runs],
            ),
        ]
        for name, senders in plan:
            print(f"[run] {name}: {args.concurrency} clients, {args.seconds:.0f} s", flush=True)
            results[name] = await phase(meter, args.seconds, senders)
            print(f"  {results[name]['requests_per_s']:.0f} requests/s", flush=True)
    return results


def report(results: dict[str, Any]) -> str:
    names = list(results)
    groups = [
        g
        for g in results[names[0]]["cpu_ms_per_request"]
        if g not in (EXITED_BACKENDS,)
        and any(results[n]["cpu_ms_per_request"][g] > 0.005 for n in names)
    ]
    lines = [
        "| per request, 4 clients | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
        "| requests/s | " + " | ".join(f"{results[n]['requests_per_s']:.0f}" for n in names) + " |",
    ]
    for group in groups:
        cells = [
            f"{results[n]['cpu_ms_per_request'][group]:.2f} ({results[n]['cores'][group]:.2f})"
            for n in names
        ]
        lines.append(f"| {group}, ms (cores) | " + " | ".join(cells) + " |")
    totals = [
        sum(v for g, v in results[n]["cpu_ms_per_request"].items() if g != CLIENT) for n in names
    ]
    lines.append("| the stack, ms | " + " | ".join(f"{t:.2f}" for t in totals) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="per phase")
    parser.add_argument("--concurrency", type=int, default=4, help="parallel clients")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args()
    command = shlex.join(["uv", "run", "python", "bench/mlflow_floor.py", *sys.argv[1:]])
    info = machine_info()
    print(f"command: {command}")
    print(
        f"machine: {info['hostname']}, {info['cores']} cores, Python {info['python']}; "
        f"load average {info['load_average']}",
        flush=True,
    )
    workdir = Path(tempfile.mkdtemp(prefix="runyard-mlflow-floor-"))
    stack = Stack.isolated(workdir / "stack", extra_env=UNLIMITED)
    try:
        stack.start()
        results = asyncio.run(bench(args, stack))
    finally:
        stack.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(report(results))
    if args.json:
        payload = {
            "command": command,
            "machine": info,
            "date": datetime.now(UTC).isoformat(timespec="minutes"),
            "results": results,
        }
        args.json.write_text(json.dumps(payload, indent=2, default=str))


if __name__ == "__main__":
    run_cli(main)
