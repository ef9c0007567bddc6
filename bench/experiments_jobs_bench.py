"""Benchmark of the experiments service's campaigns and jobs.

1. HPO: a bayesian (TPE) campaign driven by a fake training loop (suggest, 5 epochs in one
   request, should-prune, complete, the campaign told through the consumer path): the latency of
   ``suggest`` and ``should-prune`` as the campaign grows (the study is rebuilt from the database
   on every call, ADR 0007), by blocks of trials.
2. Dataset generation: one job of N signals (1 s at 10,240 Hz each) run by the job worker:
   signals/s end to end (synthesis, .npz files, read back, features, dataset and signal rows).
3. Dataset import: one uploaded CSV of M signals x 1,024 samples, validated and imported.

The service runs in-process (httpx over ASGI); the worker and the consumer path are called
directly, as in the tests.

Usage: uv run python bench/experiments_jobs_bench.py [--trials 200] [--signals 2000]
       [--import-signals 2000]
Uses DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS when set, else starts embedded Postgres and Tansu.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from runyard.experiments.config import Settings
from runyard.experiments.jobs import runner as job_runner
from runyard.experiments.main import create_app
from runyard.shared.db import create_engine, create_sessionmaker
from runyard.shared.testing import (
    identity_headers,
    local_infrastructure,
    migrated_database,
    running_app,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "services/experiments/tests"))
from experiments_helpers import deliver_own_events

PASSWORD = "bench-experiments-jobs"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def summary(ms: list[float]) -> str:
    return (
        f"p50 {percentile(ms, 0.5):.1f} / p95 {percentile(ms, 0.95):.1f} ms "
        f"(mean {statistics.fmean(ms):.1f}, n={len(ms)})"
    )


async def prepare_database(admin_url: str) -> tuple[str, str]:
    """A new database migrated like production; (service role URL, admin URL)."""
    name = f"bench_jobs_{uuid.uuid4().hex[:8]}"
    return await migrated_database(
        admin_url, "runyard.experiments", "experiments", name=name, password=PASSWORD
    )


class Db:
    """Enough of ``ServiceDatabase`` for ``deliver_own_events``."""

    def __init__(self, url: str, admin_url: str) -> None:
        self.url, self.admin_url = url, admin_url


async def bench_hpo(client: Any, db: Db, headers: dict[str, str], trials: int) -> dict[str, str]:
    campaign = (
        await client.post(
            "/api/v1/hpo-campaigns",
            json={
                "name": "bench-tpe",
                "method": "bayesian",
                "pruner": "median",
                "search_space": {
                    "lr": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True},
                    "batch": {"type": "int", "low": 16, "high": 256, "step": 16},
                    "opt": {"type": "categorical", "choices": ["adam", "sgd", "adamw"]},
                },
                "budget": {"max_trials": trials},
            },
            headers=headers,
        )
    ).json()
    suggest_ms: dict[int, list[float]] = {}
    prune_ms: dict[int, list[float]] = {}
    block = max(1, trials // 4)
    for number in range(trials):
        started = time.perf_counter()
        response = await client.post(
            f"/api/v1/hpo-campaigns/{campaign['id']}/suggest", headers=headers
        )
        suggest_ms.setdefault(number // block, []).append((time.perf_counter() - started) * 1000)
        suggestion = response.json()
        experiment_id = suggestion["experiment"]["id"]
        accuracy = 0.9 - abs(np.log10(suggestion["params"]["lr"]) + 3) / 10
        runs = [{"epoch": e, "val_accuracy": accuracy - 0.02 * (4 - e)} for e in range(5)]
        await client.post(
            f"/api/v1/experiments/{experiment_id}/runs", json={"runs": runs}, headers=headers
        )
        started = time.perf_counter()
        await client.get(f"/api/v1/experiments/{experiment_id}/should-prune", headers=headers)
        prune_ms.setdefault(number // block, []).append((time.perf_counter() - started) * 1000)
        await client.post(f"/api/v1/experiments/{experiment_id}/complete", headers=headers)
        await deliver_own_events(db)  # type: ignore[arg-type]
    result = {}
    for index in sorted(suggest_ms):
        span = f"trials {index * block}-{min(trials, (index + 1) * block) - 1}"
        result[f"suggest, {span}"] = summary(suggest_ms[index])
        result[f"should-prune, {span}"] = summary(prune_ms[index])
    done = (await client.get(f"/api/v1/hpo-campaigns/{campaign['id']}", headers=headers)).json()
    result["campaign"] = f"{done['status']}, {done['trials_completed']} trials"
    return result


async def bench_generation(
    client: Any, worker: job_runner.Worker, headers: dict[str, str], signals: int
) -> dict[str, str]:
    per_combination = max(1, signals // 13)
    job = (
        await client.post(
            "/api/v1/dataset-generations",
            json={"name": "bench-gen", "signals_per_combination": per_combination, "seed": 1},
            headers=headers,
        )
    ).json()
    started = time.perf_counter()
    await job_runner.run_next(worker)
    elapsed = time.perf_counter() - started
    done = (await client.get(f"/api/v1/dataset-generations/{job['id']}", headers=headers)).json()
    return {
        "generation": f"{done['status']}, {done['num_signals']} signals x 10,240 samples in "
        f"{elapsed:.1f} s = {done['num_signals'] / elapsed:.0f} signals/s",
    }


async def bench_import(
    client: Any, worker: job_runner.Worker, headers: dict[str, str], signals: int
) -> dict[str, str]:
    rng = np.random.default_rng(3)
    header = "signal_id,fault_class," + ",".join(f"s{i}" for i in range(1024))
    lines = [header] + [
        f"x{i},{'normal' if i % 2 else 'imbalance'}," + ",".join(f"{v:.5f}" for v in row)
        for i, row in enumerate(rng.normal(size=(signals, 1024)))
    ]
    content = ("\n".join(lines) + "\n").encode()
    started = time.perf_counter()
    job = (
        await client.post(
            "/api/v1/dataset-imports",
            files={"file": ("bench.csv", content, "text/csv")},
            data={"name": "bench-import", "sample_rate_hz": "1024"},
            headers=headers,
        )
    ).json()
    upload_s = time.perf_counter() - started
    started = time.perf_counter()
    await job_runner.run_next(worker)
    elapsed = time.perf_counter() - started
    done = (await client.get(f"/api/v1/dataset-imports/{job['id']}", headers=headers)).json()
    return {
        "import": f"{done['status']}, {len(content) / 1e6:.1f} MB CSV, {done['num_signals']} "
        f"signals: upload {upload_s * 1000:.0f} ms, job {elapsed:.1f} s = "
        f"{done['num_signals'] / elapsed:.0f} signals/s",
    }


async def run(args: argparse.Namespace, admin_url: str, bootstrap: str) -> dict[str, str]:
    url, admin = await prepare_database(admin_url)
    data_dir = tempfile.mkdtemp(prefix="runyard-jobs-bench-")
    settings = Settings(
        environment="test",
        database_url=url,
        kafka_bootstrap_servers=bootstrap,
        run_workers=False,
        log_level="WARNING",
        data_dir=data_dir,
    )
    headers = identity_headers(uuid.uuid4())
    engine = create_engine(url, pool_size=2)
    worker = job_runner.Worker(create_sessionmaker(engine, schema="experiments"), settings, "bench")
    result: dict[str, str] = {}
    try:
        async with running_app(create_app(settings)) as client:
            if args.trials:
                result |= await bench_hpo(client, Db(url, admin), headers, args.trials)
            if args.signals:
                result |= await bench_generation(client, worker, headers, args.signals)
            if args.import_signals:
                result |= await bench_import(client, worker, headers, args.import_signals)
    finally:
        await engine.dispose()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=200, help="HPO trials (0: skip)")
    parser.add_argument("--signals", type=int, default=2000, help="generated signals (0: skip)")
    parser.add_argument("--import-signals", type=int, default=2000, help="CSV rows (0: skip)")
    args = parser.parse_args()
    os.environ.setdefault("EXPERIMENTS_LOG_LEVEL", "WARNING")
    with local_infrastructure() as (admin_url, bootstrap):
        result = asyncio.run(run(args, admin_url, bootstrap))
    print(f"machine: {platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}")
    for key, value in result.items():
        print(f"{key:>36}: {value}")


if __name__ == "__main__":
    main()
