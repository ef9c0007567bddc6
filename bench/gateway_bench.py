"""Gateway overhead: the same request sent directly to a service and through the gateway.

The targets, each its own uvicorn process (one worker), all in front of the same upstream:

- ``direct``: the upstream itself (a small Starlette app answering ``GET /api/v1/experiments/x``
  with a ~300-byte JSON document; it also serves the JWKS and auth's session check);
- ``gateway``: ``runyard.gateway`` as deployed: bearer JWT verified against the JWKS, session
  check (cached), rate limit bucket, signed identity headers, request log row + batched writer,
  metrics rollup worker, security headers;
- ``hop-aiohttp`` and ``hop-httpx``: a bare Starlette reverse proxy (read the request, forward
  it with one pooled client, relay the answer) with each HTTP client: the cost of the proxy hop
  alone, to choose the gateway's client (ADR 0009);
- ``gateway-baseline`` (with ``--baseline DIR``): the gateway package found under ``DIR``, e.g.
  an earlier revision's ``services/api-gateway/src``, in the same rounds: before/after figures
  measured under the same machine load.

Two requests (``--scenarios``): ``get``, the small authenticated ``GET`` above; ``epoch``, the
per-epoch log request of a training loop, ``POST /api/v1/experiments/<id>/runs`` with one epoch's
4 metrics (answered 201 with a ~200-byte JSON document): through the gateway it also samples the
request body and writes an audit row.

The load comes from this process: ``--concurrency`` aiohttp clients with keep-alive, each
sending its requests one after another. Every round runs the targets in ABBA order so that
drifting machine load is shared; latency percentiles are over all rounds. Besides wall time it
reads the CPU time (user + system, psutil) of the target process and of the upstream process
around each timed run: CPU per request is what the hop costs on a loaded machine, where the
wall-clock figures move with whatever else runs.

Usage: uv run python bench/gateway_bench.py [--requests 2000] [--rounds 2] [--concurrency 1,16]
       [--scenarios get,epoch] [--targets direct,gateway,hop-aiohttp,hop-httpx] [--baseline DIR]
Uses DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS when set, else starts embedded Postgres and Tansu.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any, NamedTuple

import aiohttp

ROLE_ENV = "GATEWAY_BENCH_ROLE"
DB_PASSWORD = "bench-gateway"
PATH = "/api/v1/experiments/0b7f8a52-3f4e-4c1a-9d2b-6e5f4a3b2c1d"
EPOCH_PATH = PATH + "/runs"
TARGETS = ("direct", "gateway", "hop-aiohttp", "hop-httpx")


def epoch_body(epoch: int) -> bytes:
    """One epoch's 4 metrics, as a training loop logs them (bench/mlflow_compare.py)."""
    return json.dumps(
        {
            "epoch": epoch,
            "train_loss": 1 / (epoch + 1),
            "val_loss": 1.1 / (epoch + 1),
            "train_accuracy": 1 - 0.5 / (epoch + 1),
            "val_accuracy": 1 - 0.55 / (epoch + 1),
        }
    ).encode()


# --- the processes under test (this file run with GATEWAY_BENCH_ROLE set) --------------------


def upstream_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    jwks = json.loads(os.environ["BENCH_JWKS"])
    experiment = {
        "id": PATH.rsplit("/", 1)[1],
        "name": "cnn1d-baseline",
        "status": "running",
        "model_type": "cnn1d",
        "dataset_id": str(uuid.UUID(int=7)),
        "metrics": {"val_accuracy": 0.93, "loss": 0.21},
        "tags": ["pumps", "baseline"],
        "created_at": "2026-11-22T00:00:00Z",
    }
    body = json.dumps(experiment).encode()

    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def keys(_: Request) -> Response:
        return JSONResponse(jwks)

    async def session(request: Request) -> Response:
        sid = request.path_params["sid"]
        return JSONResponse({"session_id": sid, "active": True, "user_active": True, "role": ""})

    async def resource(_: Request) -> Response:
        return Response(body, media_type="application/json")

    async def epoch(request: Request) -> Response:
        logged = json.loads(await request.body())
        run = {
            "id": str(uuid.uuid4()),
            "experiment_id": experiment["id"],
            "epoch": logged["epoch"],
            "metrics": {k: v for k, v in logged.items() if k != "epoch"},
            "created_at": "2026-11-22T00:00:00Z",
        }
        return JSONResponse(run, status_code=201)

    return Starlette(
        routes=[
            Route("/health", health),
            Route("/api/v1/auth/.well-known/jwks.json", keys),
            Route("/internal/v1/sessions/{sid}", session),
            Route(EPOCH_PATH, epoch, methods=["POST"]),
            Route("/api/v1/{path:path}", resource, methods=["GET", "POST"]),
        ]
    )


def hop_app() -> Any:
    """A bare reverse proxy: the hop the gateway adds, without anything else it does."""
    import httpx
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    upstream = os.environ["BENCH_UPSTREAM"]
    kind = os.environ["BENCH_CLIENT"]
    clients: dict[str, Any] = {}
    drop = {"host", "content-length", "connection", "transfer-encoding", "keep-alive"}

    @contextlib.asynccontextmanager
    async def lifespan(_: Any) -> Any:
        if kind == "httpx":
            limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
            clients["c"] = httpx.AsyncClient(base_url=upstream, limits=limits, timeout=60)
        else:
            connector = aiohttp.TCPConnector(limit=200)
            clients["c"] = aiohttp.ClientSession(upstream, connector=connector)
        yield
        await (clients["c"].aclose() if kind == "httpx" else clients["c"].close())

    async def forward(request: Request) -> Response:
        body = await request.body()
        headers = [(k, v) for k, v in request.headers.items() if k not in drop]
        path = request.url.path
        if kind == "httpx":
            answer = await clients["c"].request(
                request.method, path, content=body or None, headers=headers
            )
            return Response(answer.content, answer.status_code, media_type=None)
        async with clients["c"].request(
            request.method, path, data=body or None, headers=headers
        ) as resp:
            return Response(await resp.read(), resp.status, media_type=None)

    return Starlette(
        routes=[Route("/{path:path}", forward, methods=["GET", "POST"])],
        lifespan=lifespan,
    )


def serve_role(role: str, port: int) -> None:
    import uvicorn

    app = upstream_app() if role == "upstream" else hop_app()
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# --- the driver -------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, *args], env={**os.environ, **env}, start_new_session=True
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


async def prepare_database(admin_url: str) -> str:
    from runyard.shared.migrations import upgrade
    from runyard.shared.provision import ensure_database, provision_service, role_url
    from runyard.shared.testing import _with_db

    name = f"bench_gateway_{uuid.uuid4().hex[:8]}"
    await ensure_database(admin_url, name)
    await provision_service(
        _with_db(admin_url, name),
        schema="gateway",
        role="runyard_gateway",
        password=DB_PASSWORD,
        database=name,
    )
    url = role_url(admin_url, role="runyard_gateway", password=DB_PASSWORD, database=name)
    await asyncio.to_thread(upgrade, "runyard.gateway", url)
    return url


def signing_material() -> tuple[str, dict[str, Any]]:
    """An access token as auth issues it, and the JWKS that verifies it."""
    import jwt
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": "bench", "use": "sig", "alg": "EdDSA"})
    now = int(time.time())
    claims = {
        "iss": "runyard",
        "aud": "runyard-api",
        "sub": str(uuid.uuid4()),
        "role": "user",
        "preferred_username": "bench",
        "sid": str(uuid.uuid4()),
        "iat": now,
        "exp": now + 24 * 3600,
        "typ": "access",
    }
    token = jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": "bench"})
    return token, {"keys": [jwk]}


async def wait_ready(url: str, path: str = "/health") -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(600):
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url + path) as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not become ready")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    import psutil

    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


class Outcome(NamedTuple):
    latencies: list[float]
    rate: float
    errors: int
    #: CPU seconds per request of the target process and of the upstream process
    target_cpu: float
    upstream_cpu: float


async def load(
    url: str,
    headers: dict[str, str],
    *,
    scenario: str,
    requests: int,
    concurrency: int,
    pids: tuple[int, int],
) -> Outcome:
    """``requests`` requests from ``concurrency`` keep-alive clients: their latencies (ms), the
    rate of successful answers per second, how many answers were not 200/201, and the CPU time
    per request of the target and upstream processes (``pids``) over the timed part."""
    latencies: list[float] = []
    errors = 0
    per_client = requests // concurrency
    connector = aiohttp.TCPConnector(limit=concurrency)
    post = scenario == "epoch"
    if post:
        headers = {**headers, "Content-Type": "application/json"}
    counter = iter(range(10**9))
    async with aiohttp.ClientSession(url, connector=connector, headers=headers) as session:

        async def one() -> int:
            if post:
                async with session.post(EPOCH_PATH, data=epoch_body(next(counter))) as resp:
                    await resp.read()
            else:
                async with session.get(PATH) as resp:
                    await resp.read()
            return resp.status

        async def client() -> None:
            nonlocal errors
            for _ in range(per_client):
                began = time.perf_counter()
                if await one() not in (200, 201):
                    errors += 1
                    continue
                latencies.append((time.perf_counter() - began) * 1000)

        for _ in range(min(50, per_client)):  # warm the pool and caches
            await one()
        target_before, upstream_before = cpu_seconds(pids[0]), cpu_seconds(pids[1])
        began = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
        target_cpu = cpu_seconds(pids[0]) - target_before
        upstream_cpu = cpu_seconds(pids[1]) - upstream_before
    done = per_client * concurrency
    return Outcome(
        latencies, len(latencies) / elapsed, errors, target_cpu / done, upstream_cpu / done
    )


def gateway_command(port: int) -> list[str]:
    return [
        "-m",
        "uvicorn",
        "runyard.gateway.main:create_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
        "--no-proxy-headers",
    ]


@contextlib.contextmanager
def processes(
    admin_url: str, bootstrap: str, targets: list[str], baseline: str = ""
) -> Iterator[dict[str, Any]]:
    """The upstream and each target in ``targets`` ("gateway-baseline": the gateway package
    found under ``baseline``, e.g. an older checkout's ``services/api-gateway/src``)."""
    from runyard.shared.testing import free_port

    token, jwks = signing_material()
    db_url = asyncio.run(prepare_database(admin_url))
    ports = {name: free_port() for name in ["direct", *targets] if name}
    upstream = f"http://127.0.0.1:{ports['direct']}"
    me = os.path.abspath(__file__)
    gateway_env = {
        "GATEWAY_ENVIRONMENT": "test",
        "GATEWAY_DATABASE_URL": db_url,
        "GATEWAY_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "GATEWAY_LOG_LEVEL": "WARNING",
        "GATEWAY_LOG_JSON": "true",
        "GATEWAY_AUTH_URL": upstream,
        "GATEWAY_EXPERIMENTS_URL": upstream,
        "GATEWAY_NOTIFICATIONS_URL": upstream,
        "GATEWAY_WEBHOOKS_URL": upstream,
        "GATEWAY_METRICS_PORT": "0",
        # measured with the limiter on, but never reached
        "GATEWAY_RATE_LIMIT_USER_PER_MINUTE": "100000000",
    }
    procs: dict[str, subprocess.Popen[bytes]] = {
        "direct": start(
            [me, "upstream", str(ports["direct"])],
            {ROLE_ENV: "upstream", "BENCH_JWKS": json.dumps(jwks)},
        )
    }
    for name in ports:
        if name.startswith("hop-"):
            client = name.removeprefix("hop-")
            procs[name] = start(
                [me, "hop", str(ports[name])],
                {ROLE_ENV: "hop", "BENCH_UPSTREAM": upstream, "BENCH_CLIENT": client},
            )
        elif name == "gateway":
            procs[name] = start(gateway_command(ports[name]), gateway_env)
        elif name == "gateway-baseline":
            path = os.pathsep.join(p for p in (baseline, os.environ.get("PYTHONPATH")) if p)
            procs[name] = start(gateway_command(ports[name]), {**gateway_env, "PYTHONPATH": path})
    try:
        yield {
            "urls": {name: f"http://127.0.0.1:{port}" for name, port in ports.items()},
            # the process serving each target (uvicorn runs the app in the process it starts)
            "pids": {name: proc.pid for name, proc in procs.items()},
            "token": token,
            "db_url": db_url,
        }
    finally:
        for proc in procs.values():
            stop(proc)


async def count_logged(db_url: str) -> int:
    import asyncpg

    from runyard.shared.db import asyncpg_dsn

    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        return int(await conn.fetchval("SELECT count(*) FROM gateway.api_request_logs"))
    finally:
        await conn.close()


async def run(setup: dict[str, Any], args: argparse.Namespace) -> None:
    urls, pids = setup["urls"], setup["pids"]
    for url in urls.values():
        await wait_ready(url)
    headers = {"Authorization": f"Bearer {setup['token']}"}
    targets = ["direct", *(t for t in urls if t != "direct")]
    print(
        f"# {platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"{args.requests} requests per target per round, {args.rounds} rounds (ABBA); "
        f"load average {' / '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    lines = [
        "| request | clients | target | requests/s | vs direct | p50 ms | p95 ms | p99 ms "
        "| added p50 / p99 ms | target CPU µs/req | upstream CPU µs/req | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for scenario in [s.strip() for s in args.scenarios.split(",") if s.strip()]:
        for concurrency in [int(c) for c in args.concurrency.split(",")]:
            latencies: dict[str, list[float]] = {t: [] for t in targets}
            rates: dict[str, list[float]] = {t: [] for t in targets}
            cpu: dict[str, list[tuple[float, float]]] = {t: [] for t in targets}
            failed: dict[str, int] = dict.fromkeys(targets, 0)
            for round_ in range(args.rounds):
                order = targets if round_ % 2 == 0 else list(reversed(targets))
                for target in order:
                    outcome = await load(
                        urls[target],
                        headers,
                        scenario=scenario,
                        requests=args.requests,
                        concurrency=concurrency,
                        pids=(pids[target], pids["direct"]),
                    )
                    failed[target] += outcome.errors
                    latencies[target] += outcome.latencies
                    rates[target].append(outcome.rate)
                    cpu[target].append((outcome.target_cpu, outcome.upstream_cpu))
            base50 = percentile(latencies["direct"], 0.5)
            base99 = percentile(latencies["direct"], 0.99)
            base_rps = sum(rates["direct"]) / len(rates["direct"])
            for target in targets:
                ms = latencies[target]
                p50, p95, p99 = (percentile(ms, p) for p in (0.5, 0.95, 0.99))
                direct = target == "direct"
                added = "—" if direct else f"{p50 - base50:+.2f} / {p99 - base99:+.2f}"
                rps = sum(rates[target]) / len(rates[target])
                target_us = 1e6 * sum(c[0] for c in cpu[target]) / len(cpu[target])
                upstream_us = 1e6 * sum(c[1] for c in cpu[target]) / len(cpu[target])
                lines.append(
                    f"| {scenario} | {concurrency} | {target} | {rps:,.0f} "
                    f"| {'—' if direct else f'{rps / base_rps:.0%}'} | {p50:.2f} | {p95:.2f} "
                    f"| {p99:.2f} | {added} | {'—' if direct else f'{target_us:,.0f}'} "
                    f"| {upstream_us:,.0f} | {failed[target]} |"
                )
                print(lines[-1], flush=True)
    await asyncio.sleep(2.0)  # let the writer flush
    logged = await count_logged(setup["db_url"])
    print("\n".join(["", *lines]))
    print(f"\ngateway request log rows written: {logged:,}")


def main() -> None:
    role = os.environ.get(ROLE_ENV)
    if role:
        serve_role(role, int(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", default="1,16")
    parser.add_argument(
        "--scenarios", default="get", help="comma-separated: get (small GET), epoch (POST)"
    )
    parser.add_argument("--targets", default=",".join(TARGETS), help="direct is always run")
    parser.add_argument(
        "--baseline",
        default="",
        help="also run target gateway-baseline: the runyard.gateway package under this directory "
        "(e.g. `git archive <rev> services/api-gateway/src | tar -x -C /tmp/base`, then "
        "/tmp/base/services/api-gateway/src)",
    )
    args = parser.parse_args()
    targets = [t.strip() for t in args.targets.split(",") if t.strip() and t.strip() != "direct"]
    if args.baseline and "gateway-baseline" not in targets:
        targets.append("gateway-baseline")
    unknown = set(targets) - {*TARGETS, "gateway-baseline"}
    if unknown:
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
    from runyard.shared.testing import local_infrastructure

    with (
        local_infrastructure() as (admin_url, bootstrap),
        processes(admin_url, bootstrap, targets, args.baseline) as setup,
    ):
        asyncio.run(run(setup, args))


if __name__ == "__main__":
    main()
