"""Per-epoch logging: Runyard through the gateway versus the MLflow 3 tracking server, side by side.

One run on this machine:

1. Creates (or reuses) the virtualenv for MLflow that the compatibility tests use too,
   ``.data/mlflow-venv`` (``runyard.shared.testing.mlflow_venv``: ``uv venv`` and ``uv pip install
   mlflow==3.17.2``), with ``psycopg2-binary`` added. MLflow never enters the workspace.
2. Starts the whole Runyard stack (``Stack.isolated``: embedded PostgreSQL, Tansu, mail sink, the
   five services on free ports), creates a database ``mlflow`` on the same PostgreSQL server and
   starts ``mlflow server`` on it (one uvicorn worker, no access log, as the Runyard services run).
   Waits for ``/health``, then until the stack and MLflow are idle: MLflow's job runner (huey
   consumers, on by default) keeps a core busy for about a minute after ``/health`` answers.
3. Registers and logs in a Runyard user through the gateway; creates the experiments and MLflow
   experiments/runs the phases need (never timed).
4. Times the same pattern on three systems: one HTTP request per epoch carrying 4 metrics
   (train/val loss and accuracy).
   - Runyard (gateway): ``POST /api/v1/experiments/{id}/runs`` with the bearer token;
   - MLflow: ``POST /api/2.0/mlflow/runs/log-batch`` with 4 metrics at step=epoch, on MLflow's
     own tracking server;
   - Runyard (MLflow API): the same log-batch requests (same bodies) to Runyard's gateway at
     ``/api/2.0/mlflow/runs/log-batch`` with the same bearer token, on an MLflow experiment and
     runs made through Runyard's ``/api/2.0/mlflow/experiments/create`` and ``/runs/create``.
   Phases:
   - sequential: one client, the systems interleaved request by request (who goes first
     rotating) after a warm-up, so all see the same background load;
   - concurrent: --concurrency clients, each logging to its own experiment/run, rounds in a
     balanced order (A B C, then C B A, ...); the CPU time each process used per request is
     measured with psutil (PostgreSQL backends split by database);
   - bulk: one request at each API's limit (Runyard: 1,000 epochs = 4,000 points; log-batch:
     1,000 metrics) and the requests 1,000 epochs need (Runyard 1, log-batch 4).
5. Stops everything it started (MLflow server, the stack), also on error or Ctrl-C.

One aiohttp session (keep-alive) drives all three. Latency is measured around each request, from
sending to the whole response read.

Usage: uv run python bench/mlflow_compare.py [--epochs 500] [--concurrency 4] [--rounds 2]
       [--bulk-repeat 5] [--mlflow-workers 1] [--json results.json] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import psutil
from sqlalchemy.engine import make_url

from runyard.devstack import Stack, free_port
from runyard.shared.db import asyncpg_dsn
from runyard.shared.provision import ensure_database
from runyard.shared.testing.mlflow_venv import (
    MlflowVenv,
    MlflowVenvError,
    child_env,
    ensure_mlflow_venv,
)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VENV = ROOT / ".data" / "mlflow-venv"
MLFLOW_EXTRAS = ("psycopg2-binary",)  # mlflow server's backend store on the stack's PostgreSQL
MLFLOW_DATABASE = "mlflow"
METRICS = ("train_loss", "val_loss", "train_accuracy", "val_accuracy")
POINTS_PER_EPOCH = len(METRICS)
MLFLOW_BATCH_LIMIT = 1000  # metrics per log-batch request
RUNYARD_BATCH_LIMIT = 1000  # epochs per POST .../runs
WARMUP = 20
#: the gateway's per-user limit (200 requests/s by default) is a policy, not a cost: the benches
#: send one user's requests faster than that, as MLflow's server (which has none) lets them
UNLIMITED = {
    "GATEWAY_RATE_LIMIT_USER_PER_MINUTE": "100000000",
    "GATEWAY_RATE_LIMIT_API_KEY_PER_MINUTE": "100000000",
}
MLFLOW_LABEL = "MLflow"
RUNYARD_MLFLOW_LABEL = "Runyard (MLflow API)"
TOKEN_MAX_AGE_S = 600.0  # access tokens live 15 min; log in again well before


class BenchError(RuntimeError):
    pass


# --- small helpers -------------------------------------------------------------------------------


def metrics_of(epoch: int) -> dict[str, float]:
    """A plausible training curve; the same values go to every system."""
    return {
        "train_loss": 1 / (epoch + 1),
        "val_loss": 1.1 / (epoch + 1),
        "train_accuracy": 1 - 0.5 / (epoch + 1),
        "val_accuracy": 1 - 0.55 / (epoch + 1),
    }


def quantiles(ms: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(ms, n=100, method="inclusive")
    return {
        "p50": cuts[49],
        "p95": cuts[94],
        "p99": cuts[98],
        "mean": statistics.fmean(ms),
    }


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


# --- 1. MLflow's own virtualenv ------------------------------------------------------------------


def mlflow_venv(venv: Path) -> MlflowVenv:
    """The shared MLflow venv (the compatibility tests' too) with the PostgreSQL driver added."""
    started = time.monotonic()
    try:
        made = ensure_mlflow_venv(venv, extras=MLFLOW_EXTRAS)
    except MlflowVenvError as exc:
        raise BenchError(str(exc)) from exc
    print(f"[setup] MLflow {made.version} in {made.path} ({time.monotonic() - started:.1f} s)")
    return made


# --- 2. the MLflow tracking server on the stack's PostgreSQL -------------------------------------


def mlflow_backend_uri(admin_server_url: str) -> str:
    """The stack's admin URL (asyncpg form, unix socket) for psycopg2 and the ``mlflow`` database.
    SQLAlchemy 2.1 reads a bare ``postgresql://`` as psycopg 3, so the driver is spelled out."""
    url = make_url(admin_server_url).set(drivername="postgresql+psycopg2", database=MLFLOW_DATABASE)
    return url.render_as_string(hide_password=False)


@dataclass
class MlflowServer:
    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def stop(self) -> None:
        """SIGTERM to the process group we started (mlflow CLI + its uvicorn), SIGKILL after 15 s."""
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def start_mlflow(mlflow: Path, backend_uri: str, workdir: Path, workers: int) -> MlflowServer:
    port = free_port()
    log_path = workdir / "mlflow-server.log"
    command = [
        str(mlflow),
        "server",
        "--backend-store-uri",
        backend_uri,
        "--artifacts-destination",
        str(workdir / "mlartifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        # the Runyard services run without an access log too
        "--uvicorn-opts",
        "--no-access-log",
    ]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            command,
            cwd=workdir,
            env=child_env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return MlflowServer(proc, f"http://127.0.0.1:{port}", log_path)


async def wait_for_mlflow(
    server: MlflowServer, session: aiohttp.ClientSession, limit_s: float
) -> float:
    """Polls ``GET /health`` (the server migrates its empty database first); returns seconds."""
    started = time.monotonic()
    while True:
        if server.proc.poll() is not None:
            raise BenchError(
                f"mlflow server exited with code {server.proc.returncode}; "
                f"last lines of {server.log_path}:\n{tail(server.log_path)}"
            )
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with session.get(
                f"{server.url}/health", timeout=aiohttp.ClientTimeout(total=2)
            ) as r:
                if r.status == 200:
                    return time.monotonic() - started
        if time.monotonic() - started > limit_s:
            raise BenchError(
                f"mlflow server not healthy after {limit_s:.0f} s; "
                f"last lines of {server.log_path}:\n{tail(server.log_path)}"
            )
        await asyncio.sleep(0.25)


# --- 3. the clients ------------------------------------------------------------------------------


async def request_json(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    expect: tuple[int, ...],
    **kwargs: Any,
) -> Any:
    async with session.request(method, url, **kwargs) as response:
        body = await response.read()
        if response.status not in expect:
            raise BenchError(f"{method} {url} -> {response.status}: {body[:500]!r}")
        return json.loads(body) if body else None


@dataclass
class Runyard:
    session: aiohttp.ClientSession
    base: str
    username: str = field(default_factory=lambda: f"bench{uuid.uuid4().hex[:10]}")
    password: str = field(default_factory=lambda: f"Bench-{uuid.uuid4().hex[:16]}-Kestrel")
    token: str = ""
    token_at: float = 0.0
    label: str = "Runyard (gateway)"
    batch_epochs: int = RUNYARD_BATCH_LIMIT

    async def register(self) -> None:
        await request_json(
            self.session,
            "POST",
            f"{self.base}/api/v1/auth/register",
            json={
                "username": self.username,
                "email": f"{self.username}@example.test",
                "password": self.password,
            },
            expect=(201,),
        )

    async def login(self) -> None:
        tokens = await request_json(
            self.session,
            "POST",
            f"{self.base}/api/v1/auth/login",
            json={"login": self.username, "password": self.password},
            expect=(200,),
        )
        self.token, self.token_at = tokens["access_token"], time.monotonic()

    async def headers(self) -> dict[str, str]:
        if time.monotonic() - self.token_at > TOKEN_MAX_AGE_S:
            await self.login()
        return {"Authorization": f"Bearer {self.token}"}

    async def new_api_key(self) -> str:
        """A new API key of this user that reads and writes experiments."""
        created = await request_json(
            self.session,
            "POST",
            f"{self.base}/api/v1/auth/api-keys",
            json={
                "name": f"bench-{uuid.uuid4().hex[:8]}",
                "scopes": ["experiments:read", "experiments:write"],
                "current_password": self.password,
            },
            headers=await self.headers(),
            expect=(200, 201),
        )
        return str(created["key"])

    async def new_target(self, name: str) -> str:
        """A new experiment; its id."""
        body = await request_json(
            self.session,
            "POST",
            f"{self.base}/api/v1/experiments",
            json={"name": f"{name}-{uuid.uuid4().hex[:8]}", "model_type": "cnn1d"},
            headers=await self.headers(),
            expect=(201,),
        )
        return str(body["id"])

    def epoch_request(
        self, target: str, epoch: int, headers: dict[str, str]
    ) -> Callable[[], Awaitable[None]]:
        url = f"{self.base}/api/v1/experiments/{target}/runs"
        payload = {"epoch": epoch, **metrics_of(epoch)}

        async def send() -> None:
            async with self.session.post(url, json=payload, headers=headers) as response:
                body = await response.read()
                if response.status != 201:
                    raise BenchError(f"Runyard epoch {epoch} -> {response.status}: {body[:300]!r}")

        return send

    async def bulk(self, target: str, first_epoch: int, epochs: int) -> None:
        runs = [{"epoch": e, **metrics_of(e)} for e in range(first_epoch, first_epoch + epochs)]
        body = await request_json(
            self.session,
            "POST",
            f"{self.base}/api/v1/experiments/{target}/runs",
            json={"runs": runs},
            headers=await self.headers(),
            expect=(201,),
        )
        if body["inserted"] != epochs:
            raise BenchError(f"Runyard bulk: {body['inserted']} of {epochs} epochs inserted")


@dataclass
class Mlflow:
    """MLflow's REST API at ``base``: MLflow's own server (no auth), or Runyard's gateway when
    ``auth`` is the Runyard user whose bearer token the requests carry."""

    session: aiohttp.ClientSession
    base: str
    label: str = MLFLOW_LABEL
    auth: Runyard | None = None
    experiment_id: str = ""
    batch_epochs: int = MLFLOW_BATCH_LIMIT // POINTS_PER_EPOCH

    async def headers(self) -> dict[str, str]:
        return await self.auth.headers() if self.auth is not None else {}

    async def create_experiment(self) -> None:
        body = await request_json(
            self.session,
            "POST",
            f"{self.base}/api/2.0/mlflow/experiments/create",
            json={"name": f"runyard-bench-{uuid.uuid4().hex[:8]}"},
            headers=await self.headers(),
            expect=(200,),
        )
        self.experiment_id = str(body["experiment_id"])

    async def new_target(self, name: str) -> str:
        """A new run in the experiment; its run_id."""
        body = await request_json(
            self.session,
            "POST",
            f"{self.base}/api/2.0/mlflow/runs/create",
            json={
                "experiment_id": self.experiment_id,
                "run_name": f"{name}-{uuid.uuid4().hex[:8]}",
                "start_time": int(time.time() * 1000),
            },
            headers=await self.headers(),
            expect=(200,),
        )
        return str(body["run"]["info"]["run_id"])

    @staticmethod
    def batch(run_id: str, epochs: range) -> dict[str, Any]:
        now = int(time.time() * 1000)
        return {
            "run_id": run_id,
            "metrics": [
                {"key": key, "value": value, "timestamp": now, "step": epoch}
                for epoch in epochs
                for key, value in metrics_of(epoch).items()
            ],
        }

    def epoch_request(
        self, target: str, epoch: int, headers: dict[str, str]
    ) -> Callable[[], Awaitable[None]]:
        url = f"{self.base}/api/2.0/mlflow/runs/log-batch"
        payload = self.batch(target, range(epoch, epoch + 1))

        async def send() -> None:
            async with self.session.post(url, json=payload, headers=headers) as response:
                body = await response.read()
                if response.status != 200:
                    raise BenchError(
                        f"{self.label} epoch {epoch} -> {response.status}: {body[:300]!r}"
                    )

        return send

    async def bulk(self, target: str, first_epoch: int, epochs: int) -> None:
        for start in range(first_epoch, first_epoch + epochs, self.batch_epochs):
            end = min(start + self.batch_epochs, first_epoch + epochs)
            await request_json(
                self.session,
                "POST",
                f"{self.base}/api/2.0/mlflow/runs/log-batch",
                json=self.batch(target, range(start, end)),
                headers=await self.headers(),
                expect=(200,),
            )


Side = Runyard | Mlflow


async def runyard_mlflow_user(
    session: aiohttp.ClientSession, gateway_url: str
) -> tuple[Runyard, Mlflow, dict[str, str]]:
    """A new Runyard user, logged in; an MLflow experiment of theirs made through Runyard's
    MLflow API; their request headers (bearer token)."""
    runyard = Runyard(session, gateway_url)
    await runyard.register()
    await runyard.login()
    mlflow = Mlflow(session, gateway_url, RUNYARD_MLFLOW_LABEL, auth=runyard)
    await mlflow.create_experiment()
    return runyard, mlflow, await runyard.headers()


async def timed(send: Callable[[], Awaitable[None]]) -> float:
    started = time.perf_counter()
    await send()
    return (time.perf_counter() - started) * 1000


# --- CPU accounting per process ------------------------------------------------------------------


def process_tree(pid: int | None) -> set[int]:
    if not pid:
        return set()
    try:
        root = psutil.Process(pid)
        return {pid, *(child.pid for child in root.children(recursive=True))}
    except psutil.Error:
        return set()


def cpu_seconds(pids: set[int]) -> dict[int, float]:
    found = {}
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            times = psutil.Process(pid).cpu_times()
            found[pid] = times.user + times.system
    return found


def uvicorn_worker(mlflow_pid: int) -> set[int]:
    """The processes of ``mlflow server``'s tree that serve HTTP: ``python -m uvicorn ...`` and,
    with --mlflow-workers > 1, its worker processes."""
    for pid in process_tree(mlflow_pid):
        with contextlib.suppress(psutil.Error):
            if "uvicorn" in psutil.Process(pid).cmdline()[:3]:
                return process_tree(pid)
    return set()


def reaped_children_seconds(pid: int | None) -> float:
    """CPU seconds of the exited children a process has reaped (the postmaster: backends of
    connections that were closed)."""
    if not pid:
        return 0.0
    with contextlib.suppress(psutil.Error):
        times = psutil.Process(pid).cpu_times()
        return float(times.children_user + times.children_system)
    return 0.0


EXITED_BACKENDS = "PostgreSQL backends that exited in the phase (any db)"
CLIENT = "bench client (this process)"


@dataclass
class CpuMeter:
    """CPU seconds each group of processes used between ``start()`` and ``stop()``, and the
    PostgreSQL connections each database got."""

    stack: Stack
    mlflow_pid: int
    admin_dsn: str
    start_times: dict[int, float] = field(default_factory=dict)
    start_reaped: float = 0.0
    start_sessions: dict[str, int] = field(default_factory=dict)
    started: float = 0.0

    async def groups(self) -> tuple[dict[str, set[int]], dict[str, int]]:
        """Process groups, and ``pg_stat_database.sessions`` (connections made) per database."""
        pids = self.stack.pids
        conn = await asyncpg.connect(self.admin_dsn, timeout=10)
        try:
            rows = await conn.fetch("SELECT pid, datname FROM pg_stat_activity")
            sessions = await conn.fetch(
                "SELECT datname, sessions FROM pg_stat_database WHERE datname = ANY($1::text[])",
                ["runyard", MLFLOW_DATABASE],
            )
        finally:
            await conn.close()
        database_of = {row["pid"]: row["datname"] for row in rows}
        postgres = process_tree(pids.get("postgres"))
        runyard_db = {p for p in postgres if database_of.get(p) == "runyard"}
        mlflow_db = {p for p in postgres if database_of.get(p) == MLFLOW_DATABASE}
        mlflow_http = uvicorn_worker(self.mlflow_pid)
        groups = {
            "Runyard gateway": process_tree(pids.get("gateway")),
            "Runyard experiments": process_tree(pids.get("experiments")),
            "Runyard auth": process_tree(pids.get("auth")),
            "Runyard notifications, webhooks, Tansu, mail sink": set().union(
                *(process_tree(pids.get(n)) for n in ("notifications", "webhooks", "kafka", "mail"))
            ),
            "MLflow server (uvicorn)": mlflow_http,
            "MLflow CLI, job runner, huey consumers": process_tree(self.mlflow_pid) - mlflow_http,
            "PostgreSQL backends of the runyard db": runyard_db,
            "PostgreSQL backends of the mlflow db": mlflow_db,
            "PostgreSQL, other processes": postgres - runyard_db - mlflow_db,
            CLIENT: {os.getpid()},
        }
        return groups, {row["datname"]: row["sessions"] for row in sessions}

    async def start(self) -> None:
        groups, self.start_sessions = await self.groups()
        self.start_times = cpu_seconds(set().union(*groups.values()))
        self.start_reaped = reaped_children_seconds(self.stack.pids.get("postgres"))
        self.started = time.perf_counter()

    async def stop(self) -> tuple[dict[str, float], float, dict[str, int]]:
        """(CPU seconds per group, wall seconds, connections made per database) since start."""
        wall = time.perf_counter() - self.started
        reaped = reaped_children_seconds(self.stack.pids.get("postgres"))
        groups, sessions = await self.groups()  # at the end: includes connections opened since
        end = cpu_seconds(set().union(*groups.values()))
        used = {
            name: sum(end[p] - self.start_times.get(p, 0.0) for p in pids if p in end)
            for name, pids in groups.items()
        }
        used[EXITED_BACKENDS] = reaped - self.start_reaped
        connections = {db: n - self.start_sessions.get(db, 0) for db, n in sessions.items()}
        return used, wall, connections

    async def settle(self, *, quiet_cores: float, window_s: float, limit_s: float) -> float:
        """Waits until the stack and MLflow (its job runner boots for a minute after /health
        answers) use less than ``quiet_cores`` together over ``window_s``; returns seconds."""
        began = time.monotonic()
        while True:
            await self.start()
            await asyncio.sleep(window_s)
            used, wall, _ = await self.stop()
            busy = (sum(used.values()) - used[CLIENT]) / wall
            if busy < quiet_cores:
                print(f"[setup] stack and MLflow together: {busy:.2f} cores busy", flush=True)
                return time.monotonic() - began
            if time.monotonic() - began > limit_s:
                print(f"[setup] still {busy:.2f} cores busy after {limit_s:.0f} s; going on")
                return time.monotonic() - began


# --- 4. the phases -------------------------------------------------------------------------------


async def sequential(sides: list[Side], epochs: int) -> dict[str, dict[str, float]]:
    """One client; the systems interleaved request by request, who goes first rotating."""
    targets = {side.label: await side.new_target("seq") for side in sides}
    latencies: dict[str, list[float]] = {side.label: [] for side in sides}
    for epoch in range(WARMUP + epochs):
        first = epoch % len(sides)
        for side in sides[first:] + sides[:first]:
            headers = await side.headers()
            took = await timed(side.epoch_request(targets[side.label], epoch, headers))
            if epoch >= WARMUP:
                latencies[side.label].append(took)
    results = {}
    for label, ms in latencies.items():
        busy = sum(ms) / 1000
        results[label] = {
            "requests": len(ms),
            "requests_per_s": len(ms) / busy,
            "points_per_s": len(ms) * POINTS_PER_EPOCH / busy,
            **quantiles(ms),
        }
    return results


async def concurrent_phase(
    side: Side, clients: int, epochs: int, meter: CpuMeter
) -> dict[str, Any]:
    """``clients`` tasks, each logging ``epochs`` epochs in sequence to its own experiment/run."""
    targets = [await side.new_target(f"par{i}") for i in range(clients)]
    headers = await side.headers()

    async def warm(target: str) -> None:
        for epoch in range(5):
            await side.epoch_request(target, epoch, headers)()

    await asyncio.gather(*(warm(t) for t in targets))
    latencies: list[float] = []

    async def client(target: str) -> None:
        for epoch in range(5, 5 + epochs):
            latencies.append(await timed(side.epoch_request(target, epoch, headers)))

    await meter.start()
    await asyncio.gather(*(client(t) for t in targets))
    cpu, wall, connections = await meter.stop()
    return {"wall_s": wall, "latencies": latencies, "cpu": cpu, "connections": connections}


async def concurrent(
    sides: list[Side], clients: int, epochs: int, rounds: int, meter: CpuMeter
) -> dict[str, dict[str, Any]]:
    """Rounds in a balanced order (ABC, CBA, ...) so that drift in the machine's load hits all
    systems alike."""
    collected: dict[str, list[dict[str, Any]]] = {side.label: [] for side in sides}
    for n in range(rounds):
        for side in sides if n % 2 == 0 else sides[::-1]:
            phase = await concurrent_phase(side, clients, epochs, meter)
            rate = len(phase["latencies"]) / phase["wall_s"]
            print(f"  round {n + 1} {side.label}: {rate:.0f} requests/s", flush=True)
            collected[side.label].append(phase)
    results: dict[str, dict[str, Any]] = {}
    for label, phases in collected.items():
        ms = [x for p in phases for x in p["latencies"]]
        wall = sum(p["wall_s"] for p in phases)
        cpu_ms_per_request = {
            name: sum(p["cpu"][name] for p in phases) * 1000 / len(ms) for name in phases[0]["cpu"]
        }
        cores_busy = {name: sum(p["cpu"][name] for p in phases) / wall for name in phases[0]["cpu"]}
        connections = {
            db: sum(p["connections"].get(db, 0) for p in phases) for db in ("runyard", "mlflow")
        }
        results[label] = {
            "requests": len(ms),
            "requests_per_s": len(ms) / wall,
            "points_per_s": len(ms) * POINTS_PER_EPOCH / wall,
            "rounds_requests_per_s": [len(p["latencies"]) / p["wall_s"] for p in phases],
            **quantiles(ms),
            "cpu_ms_per_request": cpu_ms_per_request,
            "cores_busy": cores_busy,
            "new_connections": connections,
        }
    return results


async def bulk(sides: list[Side], repeat: int) -> dict[str, dict[str, dict[str, float]]]:
    """Per system: ``one``, one request at its API's limit (Runyard: 1,000 epochs; log-batch:
    1,000 metrics, 250 epochs), and ``all``, the requests that 1,000 epochs need (1 or 4)."""

    def epochs(side: Side, key: str) -> int:
        return side.batch_epochs if key == "one" else RUNYARD_BATCH_LIMIT

    times: dict[str, dict[str, list[float]]] = {s.label: {"one": [], "all": []} for s in sides}
    for n in range(repeat + 1):  # the first round is a warm-up
        calls: list[tuple[str, str, Callable[[], Awaitable[None]]]] = []
        for side in sides:
            for key in ("one", "all"):
                target = await side.new_target(f"bulk-{key}")
                calls.append(
                    (side.label, key, functools.partial(side.bulk, target, 0, epochs(side, key)))
                )
        if n % 2:
            calls.reverse()
        for label, key, call in calls:
            took = await timed(call)
            if n:
                times[label][key].append(took)
    results: dict[str, dict[str, dict[str, float]]] = {}
    for side in sides:
        results[side.label] = {}
        for key, ms in times[side.label].items():
            points = epochs(side, key) * POINTS_PER_EPOCH
            results[side.label][key] = {
                "points": points,
                "median_ms": statistics.median(ms),
                "points_per_s": points / statistics.median(ms) * 1000,
                "min_ms": min(ms),
                "max_ms": max(ms),
            }
    return results


# --- report --------------------------------------------------------------------------------------


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


def report(results: dict[str, Any], args: argparse.Namespace) -> str:
    """Markdown tables: one column per system, then each Runyard side's ratio to MLflow."""
    labels: list[str] = results["labels"]
    others = [label for label in labels if label != MLFLOW_LABEL]
    heads = [f"MLflow {results['mlflow_version']}" if x == MLFLOW_LABEL else x for x in labels]
    lines = [
        "| pattern | figure | "
        + " | ".join(heads)
        + " | "
        + " | ".join(f"{x} / MLflow" for x in others)
        + " |",
        "|---|---|" + "---|" * (len(labels) + len(others)),
    ]

    def row(
        title: str, figure: str, values: dict[str, float], shown: Callable[[float], str]
    ) -> None:
        cells = [shown(values[x]) for x in labels]
        ratios = [ratio(values[x], values[MLFLOW_LABEL]) for x in others]
        lines.append(f"| {title} | {figure} | " + " | ".join(cells + ratios) + " |")

    for key, title in (
        ("sequential", "one client, 1 epoch (4 metrics) per request, interleaved"),
        ("concurrent", f"{args.concurrency} clients, own experiment/run each"),
    ):
        if key not in results:
            continue
        by = results[key]
        n = by[labels[0]]["requests"]
        label = f"{title} ({n} requests per system)"
        for i, (figure, field_) in enumerate(
            (("requests/s", "requests_per_s"), ("metric points/s", "points_per_s"))
        ):
            row(
                label if i == 0 else "", figure, {x: by[x][field_] for x in labels}, "{:.0f}".format
            )
        for q in ("p50", "p95", "p99"):
            row("", f"latency {q}", {x: by[x][q] for x in labels}, "{:.1f} ms".format)
    if "bulk" in results:
        b = results["bulk"]
        row(
            f"bulk, median of {args.bulk_repeat}: 1 request at the API's limit (Runyard: 1,000 "
            "epochs = 4,000 points; log-batch: 1,000 metrics)",
            "points/s",
            {x: b[x]["one"]["points_per_s"] for x in labels},
            "{:,.0f}".format,
        )
        row(
            "bulk: 1,000 epochs (4,000 points): Runyard 1 request, log-batch 4 requests",
            "time",
            {x: b[x]["all"]["median_ms"] for x in labels},
            "{:.0f} ms".format,
        )
    if "concurrent" in results:
        c = results["concurrent"]
        mlflow_rounds = c[MLFLOW_LABEL]["rounds_requests_per_s"]
        lines.append("")
        for x in others:
            # round n of every system ran in the same stretch of time (ABC CBA ...): the
            # spread of these ratios is how much the machine moved the figure above
            per_round = [
                ratio(mine, theirs)
                for mine, theirs in zip(c[x]["rounds_requests_per_s"], mlflow_rounds, strict=True)
            ]
            lines.append(f"{x} / MLflow, requests/s per concurrent round: {', '.join(per_round)}")
        lines.append("")
        lines.append(
            "CPU per logged epoch during the concurrent phases, ms (cores busy on average); "
            "everything runs all the time, so the other systems' rows are their idle background:"
        )
        lines.append("")
        lines.append("| process | " + " | ".join(f"while {x} logged" for x in labels) + " |")
        lines.append("|---|" + "---|" * len(labels))
        for name in c[labels[0]]["cpu_ms_per_request"]:
            cells = [
                f"{c[x]['cpu_ms_per_request'][name]:.2f} ({c[x]['cores_busy'][name]:.2f})"
                for x in labels
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        totals = [
            f"{sum(c[x]['cpu_ms_per_request'].values()):.2f} "
            f"({sum(c[x]['cores_busy'].values()):.2f})"
            for x in labels
        ]
        lines.append("| total | " + " | ".join(totals) + " |")
        connections = [
            f"{c[x]['new_connections']['runyard']} / {c[x]['new_connections']['mlflow']}"
            for x in labels
        ]
        lines.append(
            "| new PostgreSQL connections (runyard db / mlflow db) | "
            + " | ".join(connections)
            + " |"
        )
    return "\n".join(lines)


# --- main ----------------------------------------------------------------------------------------


async def bench(args: argparse.Namespace, stack: Stack, server: MlflowServer) -> dict[str, Any]:
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    # idle connections dropped before the servers drop them (uvicorn's keep-alive is 5 s): a
    # system's connection reused after another system's phase was otherwise at times closed
    # under the first request (ServerDisconnectedError)
    connector = aiohttp.TCPConnector(limit=max(8, args.concurrency * 2), keepalive_timeout=4)
    results: dict[str, Any] = {}
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        results["mlflow_start_s"] = await wait_for_mlflow(server, session, args.mlflow_timeout)
        print(f"[setup] MLflow server healthy after {results['mlflow_start_s']:.1f} s", flush=True)
        meter = CpuMeter(stack, server.proc.pid, asyncpg_dsn(stack.admin_server_url))
        results["settle_s"] = await meter.settle(
            quiet_cores=args.quiet_cores, window_s=5.0, limit_s=args.mlflow_timeout
        )
        print(f"[setup] stack and MLflow idle after {results['settle_s']:.1f} s more", flush=True)
        runyard = Runyard(session, stack.gateway_url)
        await runyard.register()
        await runyard.login()
        runyard_mlflow = Mlflow(session, stack.gateway_url, RUNYARD_MLFLOW_LABEL, auth=runyard)
        mlflow = Mlflow(session, server.url, MLFLOW_LABEL)
        sides: list[Side] = [runyard, mlflow, runyard_mlflow]
        for side in (runyard_mlflow, mlflow):
            await side.create_experiment()
        results["labels"] = [side.label for side in (runyard, runyard_mlflow, mlflow)]
        print(f"[setup] experiments service pid {stack.pids.get('experiments')}", flush=True)
        if args.epochs:
            print(f"[run] sequential: {args.epochs} epochs each, interleaved", flush=True)
            results["sequential"] = await sequential(sides, args.epochs)
        if args.concurrency and args.epochs and args.rounds:
            print(
                f"[run] concurrent: {args.concurrency} clients x {args.epochs} epochs, "
                f"{args.rounds} round(s), ABC CBA",
                flush=True,
            )
            results["concurrent"] = await concurrent(
                sides, args.concurrency, args.epochs, args.rounds, meter
            )
        if args.bulk_repeat:
            print(f"[run] bulk: {args.bulk_repeat} repetitions after a warm-up", flush=True)
            results["bulk"] = await bulk(sides, args.bulk_repeat)
    return results


def machine_info() -> dict[str, Any]:
    memory = psutil.virtual_memory().total / 2**30
    return {
        "hostname": platform.node(),
        "cores": os.cpu_count(),
        "memory_gib": round(memory, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def add_setup_arguments(parser: argparse.ArgumentParser, *, timeout: float) -> None:
    """The options of the set-up both MLflow comparisons share."""
    parser.add_argument(
        "--mlflow-workers",
        type=int,
        default=1,
        help="uvicorn workers of mlflow server (like the Runyard services: 1)",
    )
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="MLflow's virtualenv")
    parser.add_argument("--timeout", type=float, default=timeout, help="per HTTP request, s")
    parser.add_argument("--mlflow-timeout", type=float, default=300.0, help="MLflow start, s")
    parser.add_argument(
        "--quiet-cores",
        type=float,
        default=0.5,
        help="before measuring, wait until the stack and MLflow use less CPU than this",
    )
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, data)")


Bench = Callable[[argparse.Namespace, Stack, MlflowServer], Coroutine[Any, Any, dict[str, Any]]]


def with_stack_and_mlflow(script: str, args: argparse.Namespace, bench: Bench) -> dict[str, Any]:
    """Starts the Runyard stack and ``mlflow server`` on its PostgreSQL, runs ``bench`` and
    stops both, also on error, Ctrl-C or SIGTERM; the results with the machine and versions."""
    command = shlex.join(["uv", "run", "python", f"bench/{script}", *sys.argv[1:]])
    # SIGTERM unwinds like Ctrl-C, so the finally blocks stop what was started
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    info = machine_info()
    print(f"command: {command}")
    print(
        f"machine: {info['hostname']}, {info['cores']} cores, {info['memory_gib']} GiB, "
        f"Python {info['python']}, {info['platform']}; load average {info['load_average']}",
        flush=True,
    )
    venv = mlflow_venv(args.venv)
    workdir = Path(tempfile.mkdtemp(prefix=f"runyard-{Path(script).stem.replace('_', '-')}-"))
    stack = Stack.isolated(workdir / "stack", extra_env=UNLIMITED)
    server: MlflowServer | None = None
    failed = True
    try:
        started = time.monotonic()
        stack.start()
        print(
            f"[setup] Runyard stack up in {time.monotonic() - started:.1f} s "
            f"(gateway {stack.gateway_url})",
            flush=True,
        )
        asyncio.run(ensure_database(stack.admin_server_url, MLFLOW_DATABASE))
        server = start_mlflow(
            venv.mlflow, mlflow_backend_uri(stack.admin_server_url), workdir, args.mlflow_workers
        )
        results: dict[str, Any] = asyncio.run(bench(args, stack, server))
        results["mlflow_version"] = venv.version
        results["postgres"] = asyncio.run(server_version(stack.admin_server_url))
        failed = False
    finally:
        if server is not None:
            server.stop()
        stack.stop()
        if failed or args.keep:
            print(
                f"logs and data kept in {workdir} (MLflow: mlflow-server.log, stack: stack/logs/)"
            )
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    info["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    results["machine"] = info
    results["command"] = command
    results["date"] = datetime.now(UTC).isoformat(timespec="minutes")
    print()
    print(f"command: {command}")
    print(
        f"machine: {info['hostname']}, {info['cores']} cores, {info['memory_gib']} GiB, Python "
        f"{info['python']}; {results['postgres']}; MLflow {venv.version} "
        f"({args.mlflow_workers} uvicorn worker(s)); load average before "
        f"{info['load_average']}, after {info['load_average_after']}"
    )
    print()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=500, help="epochs per client and phase")
    parser.add_argument("--concurrency", type=int, default=4, help="parallel clients (0: skip)")
    parser.add_argument("--rounds", type=int, default=2, help="concurrent rounds (2 = ABC CBA)")
    parser.add_argument("--bulk-repeat", type=int, default=5, help="bulk repetitions (0: skip)")
    add_setup_arguments(parser, timeout=60.0)
    args = parser.parse_args()
    results = with_stack_and_mlflow("mlflow_compare.py", args, bench)
    print(report(results, args))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))


async def server_version(admin_server_url: str) -> str:
    conn = await asyncpg.connect(asyncpg_dsn(admin_server_url), timeout=10)
    try:
        return "PostgreSQL " + str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


def run_cli(main: Callable[[], None]) -> None:
    """``main()``; a ``BenchError`` ends it with its message and exit code 1."""
    try:
        main()
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    run_cli(main)
