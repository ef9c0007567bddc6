"""CPU budget: the CPU milliseconds every process of the local stack spends per operation.

The benchmark issue #15 ("Performance: cut the CPU") is measured with; run it before and after
each change. One run:

1. Starts the local stack as ``make up`` does (``python -m runyard.devstack up``, its supervisor
   in its own process, service logs echoed to its stdout) in a temporary data directory on free
   ports, and waits until it is up and idle. Stops it at the end, also on error or Ctrl-C.
2. Runs the phases (all by default, ``--phases`` picks some), each measured with psutil from a
   snapshot before to a snapshot after it. After the operations the window stays open until the
   stack is quiet again (at most ``--tail-max`` s), so the work done behind the answers (outbox
   relays, consumers, senders) is charged to the operations that caused it:
   - ``rest``: nothing happening for ``--rest-seconds``; cores used per process;
   - ``epoch``: ``--clients`` clients through the gateway, each logging ``--epochs`` epochs
     (one ``POST /api/v1/experiments/{id}/runs`` with 4 metrics per epoch) to its own
     experiment; requests/s, latency percentiles;
   - ``complete``: ``--completions`` running experiments of ``--users`` users, each user with a
     signed generic webhook endpoint to a receiver in this process and email notifications on
     (the default); all completed at once through the gateway; measured until every webhook
     arrived and every email is in the mail sink's directory; completions/s (burst start ->
     last effect), complete -> webhook and complete -> email latency;
   - ``hop``: one client, ``GET /api/v1/experiments/{id}`` through the gateway and the same
     request straight to the experiments service with the identity headers the gateway would
     sign (``runyard.shared.identity``), ABBA rounds; requests/s, p50, CPU per request;
   - ``emails``: the notifications service's one sender draining a backlog: ``--emails``
     ``experiment.completed`` events for a user it does not know yet are published to the
     broker (their emails are parked: ``emails-park``), then the user's ``user.registered``
     (the parked emails are rendered, queued and sent: ``emails``); emails/s to the SMTP sink;
   - ``webhooks``: ``--deliveries`` ``experiment.started`` events (only the webhooks service
     consumes that type) published to the broker at once for a user with one generic endpoint
     to the receiver; deliveries/s, publish -> receipt latency.
3. Prints one table per phase: process -> CPU ms, CPU ms per operation, cores, and (when the
   ``rest`` phase ran) CPU ms per operation above the stack's rest rate; the total charged (every
   stack process; this bench's own process and its monitoring connection are shown, not
   charged), the load average, and how busy the rest of the machine was.

Processes: the supervisor (``devstack up``), each service (gateway, auth, experiments,
notifications, webhooks, console), the broker (Tansu), the mail sink, and PostgreSQL split into
the backends of each role (one role per service), its background processes, the postmaster, and
backends that exited during the phase (the postmaster's reaped children).

Usage: uv run python bench/cpu_budget.py [--phases rest,epoch,complete,hop,emails,webhooks]
       [--rest-seconds 20] [--clients 4] [--epochs 500] [--users 10] [--completions 300]
       [--hop-requests 1000] [--hop-rounds 2] [--emails 500] [--deliveries 2000]
       [--json results.json] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.parser import BytesParser
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import jwt
import psutil
from aiohttp import web
from aiokafka import AIOKafkaProducer
from mlflow_compare import (
    BenchError,
    Runyard,
    machine_info,
    process_tree,
    quantiles,
    reaped_children_seconds,
    request_json,
    tail,
    timed,
)

from runyard.devstack import SERVICES, free_port
from runyard.devstack.control import read_state
from runyard.shared.contracts.auth import UserRegistered
from runyard.shared.contracts.experiments import ExperimentCompleted, ExperimentStarted
from runyard.shared.events import CONTENT_TYPE, CloudEvent, make_event
from runyard.shared.identity import Principal, signed_client_headers, signed_identity_headers

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("rest", "epoch", "complete", "hop", "emails", "webhooks")
HOST = "127.0.0.1"
#: this bench registers a dozen users and sends a few hundred requests/s as one user
STACK_ENV = {
    "GATEWAY_RATE_LIMIT_LOGIN_PER_IP_PER_MINUTE": "100000",
    "GATEWAY_RATE_LIMIT_USER_PER_MINUTE": "10000000",
}
#: what would make the devstack use servers other than its own
FOREIGN_ENV = (
    "DATABASE_URL",
    "KAFKA_BOOTSTRAP_SERVERS",
    "SMTP_URL",
    "GATEWAY_PORT",
    "RUNYARD_SERVICES",
    "RUNYARD_REPLICAS",
    "RUNYARD_TOPIC_PARTITIONS",
)
MONITOR_APP = "cpu_budget-monitor"

SUPERVISOR = "supervisor (devstack up)"
BROKER = "broker (Tansu)"
MAIL = "mail sink"
POSTMASTER = "PostgreSQL postmaster"
PG_BACKGROUND = "PostgreSQL background processes"
PG_EXITED = "PostgreSQL backends that exited in the window"
OTHER = "other children of the supervisor"
CLIENT = "bench client (this process) [not charged]"
OWN_BACKEND = "PostgreSQL backend of the bench's monitoring connection [not charged]"
NOT_CHARGED = frozenset({CLIENT, OWN_BACKEND})
SERVICE_NAMES = tuple(s.name for s in SERVICES)


def pg_group(usename: str, datname: str) -> str:
    return f"PostgreSQL backends {usename}@{datname}"


def group_order(name: str) -> tuple[int, str]:
    fixed = [SUPERVISOR, *SERVICE_NAMES, BROKER, MAIL]
    if name in fixed:
        return (fixed.index(name), name)
    if name.startswith("PostgreSQL backends ") and name != PG_EXITED:
        return (50, name)
    tail_order = [PG_EXITED, PG_BACKGROUND, POSTMASTER, OTHER, CLIENT, OWN_BACKEND]
    return (60 + (tail_order.index(name) if name in tail_order else 9), name)


# --- the stack, as `make up` runs it ---------------------------------------------------------


@dataclass
class LocalStack:
    """``python -m runyard.devstack up`` in ``data_dir`` on free ports, in its own session."""

    data_dir: Path
    ports: dict[str, int] = field(default_factory=lambda: {n: free_port() for n in SERVICE_NAMES})
    kafka_port: int = field(default_factory=free_port)
    smtp_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / "devstack-up.log"

    @property
    def command(self) -> list[str]:
        argv = [sys.executable, "-m", "runyard.devstack", "up", "--data-dir", str(self.data_dir)]
        argv += ["--kafka-port", str(self.kafka_port), "--smtp-port", str(self.smtp_port)]
        for name, port in self.ports.items():
            argv += ["--port", f"{name}={port}"]
        return argv

    def url(self, name: str) -> str:
        return f"http://{HOST}:{self.ports[name]}"

    @property
    def gateway_url(self) -> str:
        return self.url("gateway")

    @property
    def kafka_bootstrap(self) -> str:
        return f"{HOST}:{self.kafka_port}"

    @property
    def mail_dir(self) -> Path:
        return self.data_dir / "mail"

    def start(self, timeout: float) -> float:
        env = {k: v for k, v in os.environ.items() if k not in FOREIGN_ENV}
        env.update(STACK_ENV)
        env["PYTHONUNBUFFERED"] = "1"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                self.command,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches this bench, which stops it
            )
        while True:
            if self.proc.poll() is not None:
                raise BenchError(
                    f"devstack up exited with code {self.proc.returncode}; last lines of "
                    f"{self.log_path}:\n{tail(self.log_path)}"
                )
            state = read_state(self.data_dir)
            if state is not None and state.get("phase") == "running":
                return time.monotonic() - began
            if time.monotonic() - began > timeout:
                raise BenchError(
                    f"the stack was not up after {timeout:.0f} s; last lines of "
                    f"{self.log_path}:\n{tail(self.log_path)}"
                )
            time.sleep(0.25)

    def pids(self) -> dict[str, int]:
        """name -> pid of every process the supervisor runs (services, postgres, kafka, mail)."""
        state = read_state(self.data_dir) or {}
        return {p["name"]: p["pid"] for p in state.get("processes", []) if p.get("pid")}

    def postmaster(self) -> tuple[int, str]:
        """The postmaster's pid and an admin DSN for the stack's database (unix socket), from
        ``postmaster.pid``."""
        lines = (self.data_dir / "postgres" / "postmaster.pid").read_text().splitlines()
        pid, port, socket_dir = int(lines[0]), lines[3].strip(), lines[4].strip()
        return pid, f"postgresql://postgres@/runyard?host={socket_dir}&port={port}"

    def identity_secret(self) -> str:
        return str(json.loads((self.data_dir / "secrets.json").read_text())["identity_secret"])

    def stop(self) -> None:
        """SIGTERM to ``devstack up`` (what ``make down`` sends): it stops everything it started.
        Should it not finish (or have died before), SIGKILL, then stop what it recorded and
        PostgreSQL by hand."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                if proc.wait(120) == 0:
                    return
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        from runyard.devstack import orphans

        orphans.reap(self.data_dir / "processes.json", print)
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid, _ = self.postmaster()
            os.kill(pid, signal.SIGINT)  # fast shutdown
            for _ in range(300):
                if not psutil.pid_exists(pid):
                    break
                time.sleep(0.1)


# --- CPU accounting -------------------------------------------------------------------------


def machine_busy_seconds() -> float:
    t = psutil.cpu_times()
    busy = sum(t) - t.idle - getattr(t, "iowait", 0.0)
    return float(busy - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0))


def cpu_pressure_us() -> float:
    """Microseconds some runnable task waited for a core since boot (Linux PSI), or NaN."""
    try:
        line = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return float("nan")
    return float(line.rsplit("total=", 1)[1])


@dataclass
class Sample:
    wall: float
    #: pid -> (group, CPU seconds since the process started)
    pids: dict[int, tuple[str, float]]
    reaped: float
    machine_busy: float
    main_pids: dict[str, int]
    load: tuple[float, float, float]
    pressure_us: float


@dataclass
class Usage:
    """CPU seconds per group between two samples."""

    wall_s: float
    cpu_s: dict[str, float]
    machine_busy_s: float
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    #: seconds in which some runnable task waited for a core (Linux PSI "some")
    pressure_s: float = float("nan")
    restarted: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)

    @property
    def charged_s(self) -> float:
        return sum(v for k, v in self.cpu_s.items() if k not in NOT_CHARGED)

    @property
    def others_cores(self) -> float:
        """Cores the rest of the machine (other people's work) used meanwhile."""
        mine = sum(self.cpu_s.values())
        return max(0.0, self.machine_busy_s - mine) / self.wall_s if self.wall_s else 0.0

    def __add__(self, other: Usage) -> Usage:
        groups = self.cpu_s.keys() | other.cpu_s.keys()
        return Usage(
            self.wall_s + other.wall_s,
            {g: self.cpu_s.get(g, 0.0) + other.cpu_s.get(g, 0.0) for g in groups},
            self.machine_busy_s + other.machine_busy_s,
            self.load_before,
            other.load_after,
            self.pressure_s + other.pressure_s,
            self.restarted + other.restarted,
            self.lost + other.lost,
        )


class Meter:
    """Snapshots of every process's CPU time, grouped."""

    def __init__(self, stack: LocalStack, conn: asyncpg.Connection, quiet_cores: float) -> None:
        self.stack = stack
        self.conn = conn
        self.own_backend = 0
        self.quiet_cores = quiet_cores
        #: the charged cores of each group at rest, once measured
        self.rest_cores: dict[str, float] = {}

    @classmethod
    async def connect(cls, stack: LocalStack, quiet_cores: float) -> Meter:
        _, dsn = stack.postmaster()
        conn = await asyncpg.connect(
            dsn, timeout=10, server_settings={"application_name": MONITOR_APP}
        )
        meter = cls(stack, conn, quiet_cores)
        meter.own_backend = int(await conn.fetchval("SELECT pg_backend_pid()"))
        return meter

    async def sample(self) -> Sample:
        main = self.stack.pids()
        postmaster, _ = self.stack.postmaster()
        rows = await self.conn.fetch(
            "SELECT pid, backend_type, usename, datname FROM pg_stat_activity"
        )
        groups: dict[int, str] = {}
        assert self.stack.proc is not None
        supervisor = self.stack.proc.pid
        for name in SERVICE_NAMES:
            for pid in process_tree(main.get(name)):
                groups[pid] = name
        for pid in process_tree(main.get("kafka")):
            groups[pid] = BROKER
        for pid in process_tree(main.get("mail")):
            groups[pid] = MAIL
        activity = {r["pid"]: r for r in rows}
        for pid in process_tree(postmaster):
            row = activity.get(pid)
            if pid == postmaster:
                groups[pid] = POSTMASTER
            elif pid == self.own_backend:
                groups[pid] = OWN_BACKEND
            elif row is not None and row["backend_type"] == "client backend" and row["usename"]:
                groups[pid] = pg_group(row["usename"], row["datname"] or "?")
            else:
                groups[pid] = PG_BACKGROUND
        for pid in process_tree(supervisor):
            groups.setdefault(pid, OTHER)
        groups[supervisor] = SUPERVISOR
        groups[os.getpid()] = CLIENT
        seconds: dict[int, tuple[str, float]] = {}
        for pid, group in groups.items():
            with contextlib.suppress(psutil.Error):
                t = psutil.Process(pid).cpu_times()
                seconds[pid] = (group, t.user + t.system)
        return Sample(
            time.perf_counter(),
            seconds,
            reaped_children_seconds(postmaster),
            machine_busy_seconds(),
            {n: p for n, p in main.items() if n in (*SERVICE_NAMES, "kafka", "mail", "postgres")},
            os.getloadavg(),
            cpu_pressure_us(),
        )

    @staticmethod
    def diff(a: Sample, b: Sample) -> Usage:
        cpu: dict[str, float] = {}
        for pid, (group, seconds) in b.pids.items():
            before = a.pids.get(pid)
            cpu[group] = cpu.get(group, 0.0) + seconds - (before[1] if before else 0.0)
        exited_pg = 0.0  # what the exited backends had used before ``a``
        lost = []
        for pid, (group, seconds) in a.pids.items():
            if pid in b.pids:
                continue
            if group.startswith("PostgreSQL backends ") or group == PG_BACKGROUND:
                exited_pg += seconds
            else:
                lost.append(f"{group} (pid {pid})")
        cpu[PG_EXITED] = max(0.0, b.reaped - a.reaped - exited_pg)
        restarted = [
            name
            for name, pid in b.main_pids.items()
            if name in a.main_pids and a.main_pids[name] != pid
        ]
        return Usage(
            b.wall - a.wall,
            cpu,
            b.machine_busy - a.machine_busy,
            a.load,
            b.load,
            (b.pressure_us - a.pressure_us) / 1e6,
            restarted,
            lost,
        )

    def charged_cores(self, usage: Usage) -> float:
        return usage.charged_s / usage.wall_s if usage.wall_s else 0.0

    async def quiet(self, *, window_s: float, limit_s: float) -> Sample:
        """Waits until the stack's charged CPU over ``window_s`` is below ``quiet_cores``;
        returns the last sample."""
        began = time.monotonic()
        a = await self.sample()
        while True:
            await asyncio.sleep(window_s)
            b = await self.sample()
            cores = self.charged_cores(self.diff(a, b))
            if cores < self.quiet_cores or time.monotonic() - began > limit_s:
                if cores >= self.quiet_cores:
                    print(
                        f"  [quiet] still {cores:.2f} cores after {limit_s:.0f} s; going on",
                        flush=True,
                    )
                return b
            a = b

    async def settle(self, limit_s: float) -> None:
        await self.quiet(window_s=2.0, limit_s=limit_s)


@contextlib.asynccontextmanager
async def measured(meter: Meter, tail_max: float, box: list[Usage]) -> AsyncIterator[None]:
    """Measures the block, then until the stack is quiet (the work behind the answers)."""
    start = await meter.sample()
    yield
    end = await meter.quiet(window_s=1.0, limit_s=tail_max)
    box.append(Meter.diff(start, end))


# --- a webhook receiver in this process -------------------------------------------------------


@dataclass
class Receiver:
    url: str = ""
    #: webhook-id (the event id) -> receipt time (time.time())
    by_id: dict[str, float] = field(default_factory=dict)
    #: event subject -> first receipt time
    by_subject: dict[str, float] = field(default_factory=dict)
    duplicates: int = 0
    unsigned: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> web.AppRunner:
        async def hook(request: web.Request) -> web.Response:
            body = await request.read()
            now = time.time()
            webhook_id = request.headers.get("webhook-id", "")
            if "webhook-signature" not in request.headers:
                self.unsigned += 1
            if webhook_id in self.by_id:
                self.duplicates += 1
            else:
                self.by_id[webhook_id] = now
                with contextlib.suppress(ValueError, AttributeError):
                    self.by_subject.setdefault(str(json.loads(body).get("subject")), now)
            self.arrived.set()
            return web.Response(status=204)

        port = free_port()
        app = web.Application()
        app.router.add_post("/{tail:.*}", hook)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, HOST, port).start()
        self.url = f"http://{HOST}:{port}"
        return runner

    async def wait_for(self, ids: set[str], limit_s: float) -> None:
        deadline = time.monotonic() + limit_s
        while not ids <= self.by_id.keys():
            if time.monotonic() > deadline:
                missing = len(ids - self.by_id.keys())
                raise BenchError(f"{missing} of {len(ids)} webhooks missing after {limit_s:.0f} s")
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), 1.0)


# --- helpers ------------------------------------------------------------------------------------


def mails(directory: Path) -> dict[str, float]:
    """``.eml`` files of the mail sink -> mtime (the sink writes each whole, then renames)."""
    found = {}
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(directory):
            if entry.name.endswith(".eml") and not entry.name.startswith("."):
                with contextlib.suppress(FileNotFoundError):
                    found[entry.name] = entry.stat().st_mtime
    return found


async def wait_mails(directory: Path, before: set[str], count: int, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while len(mails(directory).keys() - before) < count:
        if time.monotonic() > deadline:
            got = len(mails(directory).keys() - before)
            raise BenchError(f"{got} of {count} emails in {directory} after {limit_s:.0f} s")
        await asyncio.sleep(0.1)


def subject_of(path: Path) -> str:
    with open(path, "rb") as f:
        headers = BytesParser(policy=default_policy).parsebytes(f.read(16384), headersonly=True)
    return str(headers.get("subject", ""))


def claims_of(user: Runyard) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(user.token, options={"verify_signature": False})
    return claims


async def new_user(session: aiohttp.ClientSession, base: str, prefix: str) -> Runyard:
    user = Runyard(session, base, username=f"{prefix}{uuid.uuid4().hex[:10]}")
    await user.register()
    await user.login()
    return user


async def add_endpoint(user: Runyard, url: str, events: list[str]) -> None:
    await request_json(
        user.session,
        "POST",
        f"{user.base}/api/v1/webhooks",
        json={
            "name": "cpu budget",
            "provider_type": "generic",
            "url": url,
            "enabled_events": events,
        },
        headers=await user.headers(),
        expect=(201,),
    )


async def publish(producer: AIOKafkaProducer, events: list[CloudEvent]) -> None:
    for event in events:
        await producer.send(
            event.topic,
            event.to_json(),
            key=event.subject.encode(),
            headers=[("content-type", CONTENT_TYPE.encode())],
        )
    await producer.flush()


def pct(values: list[float]) -> dict[str, float]:
    if len(values) < 2:
        return (
            {"p50": values[0], "p95": values[0], "p99": values[0], "mean": values[0]}
            if values
            else {}
        )
    return quantiles(values)


@dataclass
class Phase:
    """One table of the report."""

    key: str
    title: str
    op: str  # what one operation is ("request", "completion", ...), "" for the rest phase
    ops: int
    usage: Usage
    figures: dict[str, Any] = field(default_factory=dict)

    def to_json(self, rest: dict[str, float]) -> dict[str, Any]:
        u = self.usage
        cpu = dict(sorted(u.cpu_s.items(), key=lambda kv: group_order(kv[0])))
        per_op = {g: s * 1000 / self.ops for g, s in cpu.items()} if self.ops else {}
        out: dict[str, Any] = {
            "title": self.title,
            "operation": self.op,
            "operations": self.ops,
            "cpu_window_s": round(u.wall_s, 3),
            "cpu_ms": {g: round(s * 1000, 1) for g, s in cpu.items()},
            "cores": {g: round(s / u.wall_s, 4) for g, s in cpu.items()},
            "charged_cores": round(u.charged_s / u.wall_s, 4),
            "others_on_machine_cores": round(u.others_cores, 3),
            "cpu_pressure_share": None
            if math.isnan(u.pressure_s)
            else round(u.pressure_s / u.wall_s, 3),
            "load_average_before": [round(x, 2) for x in u.load_before],
            "load_average_after": [round(x, 2) for x in u.load_after],
            "restarted": u.restarted,
            "exited_untracked": u.lost,
            **self.figures,
        }
        if self.ops:
            out["cpu_ms_per_op"] = {g: round(v, 3) for g, v in per_op.items()}
            out["charged_ms_per_op"] = round(u.charged_s * 1000 / self.ops, 3)
            if rest:
                above = above_rest(u, rest)
                out["charged_ms_per_op_above_rest"] = round(above * 1000 / self.ops, 3)
        return out


def above_rest(usage: Usage, rest: dict[str, float]) -> float:
    """Charged CPU seconds minus what the stack burns at rest over the same wall time."""
    return usage.charged_s - sum(rest.values()) * usage.wall_s


# --- the phases -----------------------------------------------------------------------------


@dataclass
class Bench:
    args: argparse.Namespace
    stack: LocalStack
    meter: Meter
    session: aiohttp.ClientSession
    receiver: Receiver
    phases: list[Phase] = field(default_factory=list)

    async def measure(self, block: Callable[[], Awaitable[None]]) -> Usage:
        box: list[Usage] = []
        async with measured(self.meter, self.args.tail_max, box):
            await block()
        return box[0]

    def done(self, phase: Phase) -> None:
        self.phases.append(phase)
        print(render(phase, self.meter.rest_cores), flush=True)

    # 1. rest
    async def rest(self) -> None:
        seconds = self.args.rest_seconds
        print(f"[rest] {seconds:g} s with nothing happening", flush=True)
        a = await self.meter.sample()
        await asyncio.sleep(seconds)
        usage = Meter.diff(a, await self.meter.sample())
        self.meter.rest_cores = {
            g: s / usage.wall_s for g, s in usage.cpu_s.items() if g not in NOT_CHARGED
        }
        total = sum(self.meter.rest_cores.values())
        # from now on "quiet" means: close to the rest rate
        self.meter.quiet_cores = total + self.args.quiet_margin
        self.done(Phase("rest", f"the stack at rest, {seconds:g} s", "", 0, usage))

    # 2. per-epoch logging through the gateway
    async def epoch(self) -> None:
        clients, epochs = self.args.clients, self.args.epochs
        user = await new_user(self.session, self.stack.gateway_url, "epoch")
        targets = [await user.new_target(f"epoch{i}") for i in range(clients)]
        headers = await user.headers()
        for target in targets:  # warm-up: every experiment started, pools and caches warm
            for e in range(5):
                await user.epoch_request(target, e, headers)()
        await self.meter.settle(self.args.settle_max)
        print(f"[epoch] {clients} clients x {epochs} epochs (4 metrics each)", flush=True)
        latencies: list[float] = []
        span: list[float] = []

        async def client(target: str) -> None:
            for e in range(5, 5 + epochs):
                latencies.append(await timed(user.epoch_request(target, e, headers)))

        async def load() -> None:
            began = time.perf_counter()
            await asyncio.gather(*(client(t) for t in targets))
            span.append(time.perf_counter() - began)

        usage = await self.measure(load)
        n = len(latencies)
        self.done(
            Phase(
                "epoch",
                f"per-epoch log requests (4 metrics) through the gateway, {clients} clients",
                "request",
                n,
                usage,
                {"requests_per_s": round(n / span[0], 1), "latency_ms": rnd(pct(latencies))},
            )
        )

    # 3. complete + both effects
    async def complete(self) -> None:
        users_n, n = self.args.users, self.args.completions
        users = [
            await new_user(self.session, self.stack.gateway_url, "done") for _ in range(users_n)
        ]
        for user in users:
            await add_endpoint(user, f"{self.receiver.url}/complete", ["experiment.completed"])
        experiments: list[tuple[Runyard, str, str]] = []  # (owner, id, name)
        sem = asyncio.Semaphore(8)

        async def create(i: int) -> None:
            user = users[i % users_n]
            name = f"cpu-{uuid.uuid4().hex[:12]}"
            async with sem:
                body = await request_json(
                    self.session,
                    "POST",
                    f"{user.base}/api/v1/experiments",
                    json={"name": name, "model_type": "cnn1d"},
                    headers=await user.headers(),
                    expect=(201,),
                )
                await request_json(
                    self.session,
                    "POST",
                    f"{user.base}/api/v1/experiments/{body['id']}/start",
                    headers=await user.headers(),
                    expect=(200,),
                )
            experiments.append((user, str(body["id"]), name))

        print(f"[complete] creating and starting {n} experiments of {users_n} users", flush=True)
        await asyncio.gather(*(create(i) for i in range(n)))
        headers = {id(u): await u.headers() for u in users}
        await self.meter.settle(self.args.settle_max)
        # The gateway caches a session check for 10 s but does not coalesce concurrent misses:
        # 300 requests of cold sessions at once ask auth up to 300 times, which times out into
        # 503s on this machine. One request per user first, as a client that is already
        # working would have made (the burst starts well within the 10 s).
        for user in users:
            await request_json(
                self.session,
                "GET",
                f"{user.base}/api/v1/auth/me",
                headers=headers[id(user)],
                expect=(200,),
            )
        mails_before = set(mails(self.stack.mail_dir))
        sent_at: dict[str, float] = {}
        answered: list[float] = []
        retried: list[int] = []
        connector = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=self.args.drain_timeout)
        print(f"[complete] {n} completions at once", flush=True)

        async def one(user: Runyard, experiment_id: str, session: aiohttp.ClientSession) -> None:
            url = f"{user.base}/api/v1/experiments/{experiment_id}/complete"
            sent_at[experiment_id] = time.time()
            began = time.perf_counter()
            for attempt in range(5):
                async with session.post(
                    url, json={"final_metrics": {"val_accuracy": 0.9}}, headers=headers[id(user)]
                ) as r:
                    body = await r.read()
                    if r.status == 200:
                        break
                    if r.status != 503 or attempt == 4:  # 503: not applied, "try again"
                        raise BenchError(f"complete -> {r.status}: {body[:300]!r}")
                retried.append(r.status)
                await asyncio.sleep(0.2)
            answered.append((time.perf_counter() - began) * 1000)

        async def burst() -> None:
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as s:
                await asyncio.gather(*(one(u, e, s) for u, e, _ in experiments))
            ids = {e for _, e, _ in experiments}
            deadline = time.monotonic() + self.args.drain_timeout
            while not ids <= self.receiver.by_subject.keys():
                if time.monotonic() > deadline:
                    raise BenchError("webhooks missing after the drain timeout")
                await asyncio.sleep(0.05)
            await wait_mails(self.stack.mail_dir, mails_before, n, self.args.drain_timeout)

        usage = await self.measure(burst)
        first = min(sent_at.values())
        hook_ms = [(self.receiver.by_subject[e] - sent_at[e]) * 1000 for e in sent_at]
        new = {k: v for k, v in mails(self.stack.mail_dir).items() if k not in mails_before}
        by_name = {name: e for _, e, name in experiments}
        mail_ms = []
        for file, mtime in new.items():
            subject = subject_of(self.stack.mail_dir / file)
            for name, experiment_id in by_name.items():
                if f'"{name}"' in subject:
                    mail_ms.append((mtime - sent_at[experiment_id]) * 1000)
                    break
        last_effect = max(max(self.receiver.by_subject[e] for e in sent_at), max(new.values()))
        self.done(
            Phase(
                "complete",
                f"one `complete` and both its effects (signed webhook + email), {n} at once",
                "completion",
                n,
                usage,
                {
                    "completions_per_s": round(n / (last_effect - first), 1),
                    "burst_to_last_effect_s": round(last_effect - first, 2),
                    "complete_http_ms": rnd(pct(answered)),
                    "complete_to_webhook_ms": rnd(pct(hook_ms)),
                    "complete_to_email_ms": rnd(pct(mail_ms)),
                    "emails_matched": len(mail_ms),
                    "complete_503_retried": len(retried),
                    "webhooks_unsigned": self.receiver.unsigned,
                    "webhooks_duplicated": self.receiver.duplicates,
                },
            )
        )

    # 4. the gateway hop
    async def hop(self) -> None:
        user = await new_user(self.session, self.stack.gateway_url, "hop")
        experiment = await user.new_target("hop")
        claims = claims_of(user)
        secret = self.stack.identity_secret()
        path = f"/api/v1/experiments/{experiment}"
        targets = {"gateway": self.stack.gateway_url, "direct": self.stack.url("experiments")}

        def headers_for(target: str) -> dict[str, str]:
            if target == "gateway":
                return {"Authorization": f"Bearer {user.token}"}
            principal = Principal(
                user_id=uuid.UUID(claims["sub"]),
                role=claims.get("role", "user"),
                username=claims.get("preferred_username", ""),
                session_id=claims.get("sid", ""),
            )
            signed = signed_identity_headers(secret, principal)
            signed += signed_client_headers(secret, HOST)
            return dict(signed)

        latencies: dict[str, list[float]] = {t: [] for t in targets}
        spans: dict[str, float] = dict.fromkeys(targets, 0.0)
        usages: dict[str, list[Usage]] = {t: [] for t in targets}
        requests = self.args.hop_requests
        print(
            f"[hop] one client, GET {path}: gateway vs direct, {self.args.hop_rounds} rounds "
            f"of {requests} requests each (ABBA)",
            flush=True,
        )
        await user.headers()  # a fresh token for the whole phase
        for round_ in range(self.args.hop_rounds):
            order = list(targets) if round_ % 2 == 0 else list(reversed(targets))
            for target in order:
                url = targets[target] + path
                headers = headers_for(target)  # signatures live 300 s; a round is far shorter
                connector = aiohttp.TCPConnector(limit=1)
                async with aiohttp.ClientSession(connector=connector, headers=headers) as s:

                    async def get(s: aiohttp.ClientSession = s, url: str = url) -> None:
                        async with s.get(url) as r:
                            body = await r.read()
                            if r.status != 200:
                                raise BenchError(f"GET {url} -> {r.status}: {body[:300]!r}")

                    for _ in range(50):  # warm the connection and caches
                        await get()
                    await self.meter.settle(self.args.settle_max)

                    async def load(target: str = target, get: Any = get) -> None:
                        began = time.perf_counter()
                        for _ in range(requests):
                            latencies[target].append(await timed(get))
                        spans[target] += time.perf_counter() - began

                    usages[target].append(await self.measure(load))
        figures: dict[str, dict[str, Any]] = {}
        for target in targets:
            ms = latencies[target]
            figures[target] = {
                "requests_per_s": round(len(ms) / spans[target], 1),
                "latency_ms": rnd(pct(ms)),
            }
        ratio = figures["gateway"]["requests_per_s"] / figures["direct"]["requests_per_s"]
        added = figures["gateway"]["latency_ms"]["p50"] - figures["direct"]["latency_ms"]["p50"]
        for target in targets:
            total = usages[target][0]
            for more in usages[target][1:]:
                total = total + more
            extra: dict[str, Any] = dict(figures[target])
            if target == "gateway":
                extra["gateway_over_direct_requests_per_s"] = round(ratio, 3)
                extra["added_p50_ms"] = round(added, 2)
            self.done(
                Phase(
                    f"hop-{target}",
                    f"small authenticated GET, one client, {target}"
                    + (" (through the gateway)" if target == "gateway" else " to experiments"),
                    "request",
                    len(latencies[target]),
                    total,
                    extra,
                )
            )

    # 5. emails
    async def emails(self, producer: AIOKafkaProducer, conn: asyncpg.Connection) -> None:
        n = self.args.emails
        owner = uuid.uuid4()

        def completed(i: int) -> CloudEvent:
            experiment = uuid.uuid4()
            payload = ExperimentCompleted(
                experiment_id=experiment,
                name=f"mail-{i}",
                owner_id=owner,
                status="completed",
                final_metrics={"val_accuracy": 0.9, "val_loss": 0.2},
                total_epochs=10,
                best_epoch=7,
            )
            return make_event(payload, source="/runyard/experiments", subject=experiment)

        events = [completed(i) for i in range(n)]
        print(f"[emails] {n} experiment.completed events for a user not known yet", flush=True)

        async def parked() -> int:
            return int(
                await conn.fetchval(
                    "SELECT count(*) FROM notifications.email_logs WHERE user_id = $1", owner
                )
            )

        async def park() -> None:
            await publish(producer, events)
            deadline = time.monotonic() + self.args.drain_timeout
            while await parked() < n:
                if time.monotonic() > deadline:
                    raise BenchError(f"{await parked()} of {n} emails parked")
                await asyncio.sleep(0.25)

        usage = await self.measure(park)
        self.done(
            Phase(
                "emails-park",
                "an experiment.completed event consumed for an unknown user (email parked)",
                "event",
                n,
                usage,
            )
        )
        await self.meter.settle(self.args.settle_max)
        before = set(mails(self.stack.mail_dir))
        registered = make_event(
            UserRegistered(
                user_id=owner,
                username=f"mail{owner.hex[:8]}",
                email=f"m{owner.hex[:10]}@example.test",
            ),
            source="/runyard/auth",
            subject=owner,
            sequence=1,
        )
        marks: list[float] = []
        print(f"[emails] user.registered: {n} parked emails rendered, queued and sent", flush=True)

        async def send() -> None:
            marks.append(time.time())
            await publish(producer, [registered])
            await wait_mails(self.stack.mail_dir, before, n, self.args.drain_timeout)

        usage = await self.measure(send)
        times = sorted(t for k, t in mails(self.stack.mail_dir).items() if k not in before)[:n]
        self.done(
            Phase(
                "emails",
                "emails to the SMTP sink, one sender, a backlog released at once",
                "email",
                n,
                usage,
                {
                    "emails_per_s": round(n / (times[-1] - marks[0]), 1),
                    "first_to_last_email_per_s": round((n - 1) / (times[-1] - times[0]), 1),
                    "release_to_first_email_s": round(times[0] - marks[0], 2),
                },
            )
        )

    # 6. webhooks
    async def webhooks(self, producer: AIOKafkaProducer) -> None:
        n = self.args.deliveries
        user = await new_user(self.session, self.stack.gateway_url, "hooks")
        owner = uuid.UUID(claims_of(user)["sub"])
        await add_endpoint(user, f"{self.receiver.url}/deliveries", ["experiment.started"])

        def started(i: int) -> CloudEvent:
            experiment = uuid.uuid4()
            payload = ExperimentStarted(
                experiment_id=experiment,
                name=f"hook-{i}",
                owner_id=owner,
                model_type="cnn1d",
                status="running",
                started_at=datetime.now(UTC),
            )
            return make_event(payload, source="/runyard/experiments", subject=experiment)

        warm = started(-1)  # fan-out's caches and the delivery connection warm, off the clock
        await publish(producer, [warm])
        await self.receiver.wait_for({warm.id}, self.args.drain_timeout)
        await self.meter.settle(self.args.settle_max)
        events = [started(i) for i in range(n)]
        published: dict[str, float] = {}
        print(f"[webhooks] {n} experiment.started events at once, one endpoint", flush=True)

        async def load() -> None:
            for event in events:
                published[event.id] = time.time()
                await producer.send(
                    event.topic,
                    event.to_json(),
                    key=event.subject.encode(),
                    headers=[("content-type", CONTENT_TYPE.encode())],
                )
            await producer.flush()
            await self.receiver.wait_for(set(published), self.args.drain_timeout)

        usage = await self.measure(load)
        got = {e: self.receiver.by_id[e] for e in published}
        first, last = min(published.values()), max(got.values())
        self.done(
            Phase(
                "webhooks",
                "webhook deliveries to one fast endpoint, saturated",
                "delivery",
                n,
                usage,
                {
                    "deliveries_per_s": round(n / (last - first), 1),
                    "publish_to_receipt_ms": rnd(
                        pct([(got[e] - published[e]) * 1000 for e in published])
                    ),
                },
            )
        )


def rnd(d: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 2) for k, v in d.items()}


# --- report ---------------------------------------------------------------------------------


def render(phase: Phase, rest: dict[str, float]) -> str:
    u = phase.usage
    per = f"ms per {phase.op}" if phase.op else ""
    show_rest = bool(phase.op and rest)
    head = ["process", "CPU ms", *([per] if per else []), "cores"]
    if show_rest:
        head.append(f"{per} above rest")
    lines = [
        "",
        f"## {phase.title}",
        f"CPU window {u.wall_s:.1f} s; load average {fmt_load(u.load_before)} -> "
        f"{fmt_load(u.load_after)}; other work on the machine {u.others_cores:.2f} cores; "
        f"some task waited for a core {u.pressure_s / u.wall_s:.0%} of the time",
    ]
    if phase.op:
        plural = phase.op[:-1] + "ies" if phase.op.endswith("y") else phase.op + "s"
        lines.append(f"{phase.ops} {plural}")
    for key, value in phase.figures.items():
        lines.append(f"{key}: {fmt_value(value)}")
    if u.restarted:
        lines.append(f"WARNING: restarted during the phase: {', '.join(u.restarted)}")
    if u.lost:
        lines.append(f"note: exited during the phase (CPU not counted): {', '.join(u.lost)}")
    lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for group in sorted(u.cpu_s, key=group_order):
        seconds = u.cpu_s[group]
        row = [group, f"{seconds * 1000:,.0f}"]
        if per:
            row.append(f"{seconds * 1000 / phase.ops:.2f}")
        row.append(f"{seconds / u.wall_s:.3f}")
        if show_rest:
            above = seconds - rest.get(group, 0.0) * u.wall_s
            row.append("" if group in NOT_CHARGED else f"{above * 1000 / phase.ops:.2f}")
        lines.append("| " + " | ".join(row) + " |")
    total = ["**total charged**", f"**{u.charged_s * 1000:,.0f}**"]
    if per:
        total.append(f"**{u.charged_s * 1000 / phase.ops:.2f}**")
    total.append(f"**{u.charged_s / u.wall_s:.3f}**")
    if show_rest:
        total.append(f"**{above_rest(u, rest) * 1000 / phase.ops:.2f}**")
    lines.append("| " + " | ".join(total) + " |")
    charged = {g: s for g, s in u.cpu_s.items() if g not in NOT_CHARGED}
    top = sorted(charged.items(), key=lambda kv: -kv[1])[:4]
    share = ", ".join(f"{g} {s / u.charged_s:.0%}" for g, s in top) if u.charged_s else ""
    lines.append(f"biggest consumers: {share}")
    return "\n".join(lines)


def fmt_load(load: tuple[float, float, float]) -> str:
    return "/".join(f"{x:.1f}" for x in load)


def fmt_value(value: Any) -> str:
    if isinstance(value, dict):
        return " / ".join(f"{k} {v:g}" for k, v in value.items())
    return str(value)


def matrix(phases: list[Phase], rest: dict[str, float]) -> str:
    """Process x phase: CPU ms per operation (above the rest rate when it was measured), and
    the rest phase's cores."""
    measured_ = [p for p in phases if p.ops]
    groups = sorted(
        {g for p in phases for g in p.usage.cpu_s if g not in NOT_CHARGED}, key=group_order
    )
    unit = "ms per operation above rest" if rest else "ms per operation"
    head = ["process", *(["rest (cores)"] if rest else []), *(p.key for p in measured_)]
    lines = [
        f"CPU {unit}:",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]

    def cell(p: Phase, group: str | None) -> str:
        u = p.usage
        if group is None:
            seconds = above_rest(u, rest) if rest else u.charged_s
        else:
            seconds = u.cpu_s.get(group, 0.0) - rest.get(group, 0.0) * u.wall_s
        return f"{seconds * 1000 / p.ops:.2f}"

    for group in groups:
        row = [group, *([f"{rest.get(group, 0.0):.3f}"] if rest else [])]
        lines.append("| " + " | ".join(row + [cell(p, group) for p in measured_]) + " |")
    total = ["**total**", *([f"**{sum(rest.values()):.3f}**"] if rest else [])]
    lines.append("| " + " | ".join(total + [f"**{cell(p, None)}**" for p in measured_]) + " |")
    return "\n".join(lines)


def summary(phases: list[Phase], rest: dict[str, float]) -> str:
    """The issue's table: the figures next to the goals."""
    by = {p.key: p for p in phases}

    def ms(key: str) -> str:
        p = by.get(key)
        if p is None:
            return "not run"
        text = f"{p.usage.charged_s * 1000 / p.ops:.1f} ms CPU"
        if rest:
            text += f" ({above_rest(p.usage, rest) * 1000 / p.ops:.1f} above rest)"
        return text

    rows = [("what", "measured", "goal")]
    if "rest" in by:
        u = by["rest"].usage
        rows.append(("the stack at rest", f"{u.charged_s / u.wall_s:.3f} cores", "<= 0.03 cores"))
    if "epoch" in by:
        f = by["epoch"].figures
        rows.append(
            (
                "per-epoch log request (4 metrics), gateway, 4 clients",
                f"{ms('epoch')}, {f['requests_per_s']:.0f} req/s, p50 {f['latency_ms']['p50']:.1f} ms",
                "<= 2.5 ms CPU",
            )
        )
    if "complete" in by:
        f = by["complete"].figures
        rows.append(
            (
                f"`complete` + webhook + email, {by['complete'].ops} at once",
                f"{ms('complete')}; {f['completions_per_s']:.0f}/s; complete->webhook p99 "
                f"{f['complete_to_webhook_ms']['p99'] / 1000:.2f} s",
                "<= 10 ms CPU; >= 120/s; p99 <= 1 s",
            )
        )
    if "hop-gateway" in by:
        f = by["hop-gateway"].figures
        d = by["hop-direct"].figures
        rows.append(
            (
                "gateway hop, one client, small GET",
                f"{f['gateway_over_direct_requests_per_s']:.0%} of direct req/s "
                f"({f['requests_per_s']:.0f} vs {d['requests_per_s']:.0f}), "
                f"{f['added_p50_ms']:+.2f} ms p50; {ms('hop-gateway')} vs {ms('hop-direct')}",
                ">= 70 % of direct, <= +1 ms p50",
            )
        )
    if "emails" in by:
        f = by["emails"].figures
        rows.append(
            (
                "emails to the SMTP sink, one sender",
                f"{f['emails_per_s']:.0f}/s ({f['first_to_last_email_per_s']:.0f}/s first to "
                f"last); {ms('emails')} per email",
                ">= 300/s",
            )
        )
    if "webhooks" in by:
        f = by["webhooks"].figures
        rows.append(
            (
                "webhook deliveries to one fast endpoint, saturated",
                f"{f['deliveries_per_s']:.0f}/s; {ms('webhooks')} per delivery",
                ">= 600/s",
            )
        )
    out = ["| " + " | ".join(rows[0]) + " |", "|---|---|---|"]
    out += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(out)


# --- main -----------------------------------------------------------------------------------


async def run(args: argparse.Namespace, stack: LocalStack) -> Bench:
    meter = await Meter.connect(stack, args.quiet_cores)
    receiver = Receiver()
    runner = await receiver.start()
    connector = aiohttp.TCPConnector(limit=max(16, args.clients * 2), keepalive_timeout=60)
    timeout = aiohttp.ClientTimeout(total=120)
    producer: AIOKafkaProducer | None = None
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            bench = Bench(args, stack, meter, session, receiver)
            print(f"[setup] waiting until the stack is quiet (< {args.quiet_cores} cores)")
            await meter.settle(args.start_settle_max)
            for phase in args.phases:
                if phase in ("emails", "webhooks") and producer is None:
                    producer = AIOKafkaProducer(
                        bootstrap_servers=stack.kafka_bootstrap, acks="all", linger_ms=5
                    )
                    await producer.start()
                if phase != "rest":
                    await meter.settle(args.settle_max)
                if phase == "emails":
                    assert producer is not None
                    await bench.emails(producer, meter.conn)
                elif phase == "webhooks":
                    assert producer is not None
                    await bench.webhooks(producer)
                else:
                    await getattr(bench, phase)()
            return bench
    finally:
        if producer is not None:
            await producer.stop()
        await runner.cleanup()
        await meter.conn.close()


def parse_phases(value: str) -> list[str]:
    names = [p.strip() for p in value.split(",") if p.strip()]
    unknown = set(names) - set(PHASES)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown phase(s) {', '.join(sorted(unknown))}")
    return [p for p in PHASES if p in names]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--phases", type=parse_phases, default=list(PHASES), help=",".join(PHASES))
    parser.add_argument("--rest-seconds", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=4, help="epoch phase: parallel clients")
    parser.add_argument("--epochs", type=int, default=500, help="epoch phase: epochs per client")
    parser.add_argument("--users", type=int, default=10, help="complete phase: owners")
    parser.add_argument("--completions", type=int, default=300, help="complete phase: burst")
    parser.add_argument("--hop-requests", type=int, default=1000, help="per target and round")
    parser.add_argument("--hop-rounds", type=int, default=2, help="ABBA rounds")
    parser.add_argument("--emails", type=int, default=500, help="emails phase: backlog")
    parser.add_argument("--deliveries", type=int, default=2000, help="webhooks phase: events")
    parser.add_argument(
        "--quiet-cores",
        type=float,
        default=0.6,
        help="before the rest phase: quiet = the stack uses fewer cores than this",
    )
    parser.add_argument(
        "--quiet-margin",
        type=float,
        default=0.15,
        help="after the rest phase: quiet = the rest rate + this many cores",
    )
    parser.add_argument("--tail-max", type=float, default=15.0, help="s to wait for quiet after")
    parser.add_argument("--settle-max", type=float, default=60.0, help="s to wait for quiet before")
    parser.add_argument("--start-settle-max", type=float, default=120.0)
    parser.add_argument("--start-timeout", type=float, default=240.0)
    parser.add_argument("--drain-timeout", type=float, default=300.0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, data)")
    args = parser.parse_args()
    command = shlex.join(["uv", "run", "python", "bench/cpu_budget.py", *sys.argv[1:]])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    info = machine_info()
    print(f"command: {command}")
    print(
        f"machine: {info['hostname']}, {info['cores']} cores, {info['memory_gib']} GiB, "
        f"Python {info['python']}; load average {info['load_average']}",
        flush=True,
    )
    workdir = Path(tempfile.mkdtemp(prefix="runyard-cpu-"))
    stack = LocalStack(workdir / "data")
    failed = True
    try:
        print(f"[setup] {shlex.join(stack.command)}", flush=True)
        up_s = stack.start(args.start_timeout)
        print(f"[setup] stack up in {up_s:.1f} s (gateway {stack.gateway_url})", flush=True)
        bench = asyncio.run(run(args, stack))
        failed = False
    finally:
        stack.stop()
        if failed or args.keep:
            print(f"logs and data kept in {workdir} (devstack-up.log, data/logs/)")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    info["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    rest = bench.meter.rest_cores
    print()
    print(f"command: {command}")
    print(
        f"machine: {info['hostname']}, {info['cores']} cores, Python {info['python']}; load "
        f"average before {info['load_average']}, after {info['load_average_after']}; "
        f"{datetime.now(UTC).isoformat(timespec='minutes')}"
    )
    print()
    print(summary(bench.phases, rest))
    print()
    print(matrix(bench.phases, rest))
    if args.json:
        results = {
            "command": command,
            "date": datetime.now(UTC).isoformat(timespec="minutes"),
            "machine": info,
            "stack_up_s": round(up_s, 1),
            "rest_cores": {g: round(c, 4) for g, c in rest.items()},
            "phases": {p.key: p.to_json(rest) for p in bench.phases},
        }
        args.json.write_text(json.dumps(results, indent=2))
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    try:
        main()
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
