"""The Python SDK in a training loop versus the stock MLflow client, side by side in one run.

1. MLflow in its own virtualenv under ``.data/bench/mlflow-venv`` and ``mlflow server`` on the
   stack's PostgreSQL (both as bench/mlflow_compare.py does it, with its functions); the whole
   Runyard stack (``Stack.isolated``); a Runyard user with an API key. Waits until both idle.
2. Overhead of one ``log()`` with 4 metrics in the training loop, p50/p99 in µs: ``runyard``
   (``run.log``), ``mlflow`` (``mlflow.log_metrics(..., step=)``, synchronous) and
   ``mlflow-async`` (the same with ``MLFLOW_ENABLE_ASYNC_LOGGING=true``).
3. A training script, 2,000 epochs x 4 metrics, with a ~1 ms numpy step per epoch and with no
   compute at all: time spent inside the logging calls, the loop's wall time minus the same loop
   without logging, time until every point is on the server (the client's end returned), points
   per second, and the server's CPU per point beyond its idle rate (gateway + experiments + auth +
   their PostgreSQL backends; MLflow's uvicorn + its backends), each client in its own process.
4. A 30 s gateway outage during a Runyard training loop (10 ms steps): the step times before,
   during and after it, and every epoch on the server exactly once afterwards.

Each client runs ``bench/sdk_client.py`` in a fresh process. Usage:
    uv run python bench/sdk_bench.py [--overhead-calls 10000] [--mlflow-sync-calls 2000]
        [--epochs 2000] [--outage-s 30] [--json results.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mlflow_compare as mc

from runyard.devstack import Stack
from runyard.shared.db import asyncpg_dsn
from runyard.shared.provision import ensure_database

CLIENT = Path(__file__).resolve().parent / "sdk_client.py"
#: one BLAS thread: on 2 shared cores a multi-threaded matmul's time swings with any other load
ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
RUNYARD_GROUPS = (
    "Runyard gateway",
    "Runyard experiments",
    "Runyard auth",
    "PostgreSQL backends of the runyard db",
)
MLFLOW_GROUPS = ("MLflow server (uvicorn)", "PostgreSQL backends of the mlflow db")


def api_key(stack: Stack) -> str:
    name = f"bench{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=f"{stack.gateway_url}/api/v1", timeout=30) as api:
        user = {"username": name, "email": f"{name}@example.test", "password": f"Pw-{name}-x1!"}
        api.post("/auth/register", json=user).raise_for_status()
        token = api.post("/auth/login", json={"login": name, "password": user["password"]})
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        key = api.post(
            "/auth/api-keys",
            json={
                "name": "bench",
                "scopes": ["experiments:write", "experiments:read"],
                "rate_limit": 100000,
                "current_password": user["password"],
            },
            headers=headers,
        )
        key.raise_for_status()
        return str(key.json()["key"])


def run_client(python: str, env: dict[str, str], *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [python, str(CLIENT), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if done.returncode != 0:
        raise mc.BenchError(f"{shlex.join(args)} failed:\n{done.stderr[-3000:]}")
    return result_of(done.stdout)


def result_of(stdout: str) -> dict[str, Any]:
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line[len("RESULT ") :])
            return result
    raise mc.BenchError(f"the client printed no result: {stdout[-2000:]}")


def measured(
    meter: mc.CpuMeter, idle: dict[str, float], python: str, env: dict[str, str], *args: str
) -> dict[str, Any]:
    """The client's result, with the CPU each group used meanwhile beyond its idle rate."""
    asyncio.run(meter.start())
    result = run_client(python, env, *args)
    used, wall, _ = asyncio.run(meter.stop())
    result["cpu_s"] = {
        k: round(v - idle.get(k, 0.0) * wall, 3) for k, v in used.items() if v > 0.005
    }
    return result


def outage(stack: Stack, env: dict[str, str], seconds: float, down_s: float) -> dict[str, Any]:
    control = Path(tempfile.mkdtemp()) / "control"
    events: dict[str, float] = {}

    def fault() -> None:
        time.sleep((seconds - down_s) / 2)
        events["down"] = time.time()
        stack.kill("gateway")
        time.sleep(down_s)
        stack.start_service("gateway")
        stack.wait_ready("gateway")
        events["up"] = time.time()

    thread = threading.Thread(target=fault)
    args = [
        "--client",
        "runyard",
        "--mode",
        "outage",
        "--url",
        stack.gateway_url,
        "--seconds",
        str(seconds),
        "--step-us",
        "10000",
        "--control",
        str(control),
    ]
    proc = subprocess.Popen(
        [sys.executable, str(CLIENT), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    thread.start()
    thread.join()
    while not control.exists():
        time.sleep(0.05)
    control.with_name("control.go").touch()
    out, err = proc.communicate(timeout=600)
    if proc.returncode != 0:
        raise mc.BenchError(f"outage client failed:\n{err[-3000:]}")
    result = result_of(out)
    phases: dict[str, list[tuple[float, float]]] = {"before": [], "during": [], "after": []}
    for started, step_us, log_us in result.pop("steps"):
        key = (
            "before"
            if started < events["down"]
            else "during"
            if started < events["up"]
            else "after"
        )
        phases[key].append((step_us, log_us))
    result["step_us"] = {
        k: {"n": len(v), **pct("step", [s for s, _ in v]), **pct("log", [g for _, g in v])}
        for k, v in phases.items()
        if v
    }
    result["down_s"] = events["up"] - events["down"]
    result["warnings"] = [line for line in err.splitlines() if line.startswith("runyard:")]
    return result


def pct(name: str, values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        f"{name}_p50": statistics.median(ordered),
        f"{name}_p99": ordered[int(len(ordered) * 0.99)],
    }


def idle_rates(meter: mc.CpuMeter, seconds: float) -> dict[str, float]:
    """CPU seconds per second each group uses with no client (polling loops, Kafka ...)."""
    asyncio.run(meter.start())
    time.sleep(seconds)
    used, wall, _ = asyncio.run(meter.stop())
    return {k: v / wall for k, v in used.items()}


def on_server(stack: Stack, key: str, name_prefix: str) -> dict[str, Any]:
    with httpx.Client(
        base_url=f"{stack.gateway_url}/api/v1", headers={"X-API-Key": key}, timeout=30
    ) as api:
        page = api.get("/experiments", params={"filter": f"name LIKE '{name_prefix}%'"}).json()
        [experiment] = page["items"]
        epochs: list[int] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 500, **({"cursor": cursor} if cursor else {})}
            body = api.get(f"/experiments/{experiment['id']}/runs", params=params).json()
            epochs += [r["epoch"] for r in body["items"]]
            cursor = body["next_cursor"]
            if not cursor:
                break
    return {
        "epochs": len(epochs),
        "distinct": len(set(epochs)),
        "total_epochs": experiment["total_epochs"],
        "status": experiment["status"],
    }


def report(results: dict[str, Any]) -> str:
    lines = [
        "log() overhead in the loop (µs, 4 metrics per call):",
        f"  {'client':<14}{'calls':>8}{'p50':>10}{'p99':>10}{'p99.9':>10}{'max':>10}",
    ]
    for kind, r in results["overhead"].items():
        q = r["log_us"]
        lines.append(
            f"  {kind:<14}{r['calls']:>8}{q['p50']:>10.1f}{q['p99']:>10.1f}"
            f"{q['p999']:>10.1f}{q['max']:>10.0f}"
        )
    for label, runs in results["script"].items():
        lines += ["", f"training script, {label}:"]
        lines.append(
            f"  {'client':<14}{'in log() s':>11}{'loop +s':>9}{'on server s':>13}"
            f"{'points/s':>10}{'server CPU µs/point':>21}"
        )
        for kind, r in runs.items():
            groups = RUNYARD_GROUPS if kind == "runyard" else MLFLOW_GROUPS
            cpu = sum(r["cpu_s"].get(g, 0.0) for g in groups) / r["points"] * 1e6
            r["server_cpu_us_per_point"] = cpu
            lines.append(
                f"  {kind:<14}{r['in_log_s']:>11.3f}{r['added_s']:>9.2f}"
                f"{r['all_on_server_s']:>13.2f}{r['points_per_s']:>10.0f}{cpu:>21.1f}"
            )
        best = max(r["points_per_s"] for k, r in runs.items() if k != "runyard")
        lines.append(
            f"  runyard / best MLflow points per second: {runs['runyard']['points_per_s'] / best:.1f}x"
        )
    o = results.get("outage")
    if o:
        lines += ["", f"gateway down {o['down_s']:.1f} s during a ~10 ms-step loop (µs):"]
        for phase, s in o["step_us"].items():
            lines.append(
                f"  {phase:<7} {s['n']:>6} steps: step p50 {s['step_p50']:>7.0f} p99 "
                f"{s['step_p99']:>7.0f}; of which log() p50 {s['log_p50']:>5.1f} p99 "
                f"{s['log_p99']:>6.1f}"
            )
        lines.append(
            f"  logged {o['epochs']} epochs; on the server afterwards: {o['server']}; "
            f"the end took {o['end_s']:.2f} s"
        )
        lines += [f"  client said: {w}" for w in o["warnings"]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--overhead-calls", type=int, default=10000)
    parser.add_argument("--mlflow-sync-calls", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=2000)
    parser.add_argument(
        "--step-us",
        type=float,
        nargs="+",
        default=[1000.0, 0.0],
        help="the training step's compute per epoch, one script run per value (0: none)",
    )
    parser.add_argument("--outage-s", type=float, default=30.0, help="0: skip the outage")
    parser.add_argument("--venv", type=Path, default=mc.DEFAULT_VENV)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    command = shlex.join(["uv", "run", "python", "bench/sdk_bench.py", *sys.argv[1:]])
    info = mc.machine_info()
    print(f"command: {command}\nmachine: {info}", flush=True)
    mlflow_bin, mlflow_version = mc.ensure_mlflow_venv(args.venv)
    mlflow_python = str(mlflow_bin.parent / "python")
    workdir = Path(tempfile.mkdtemp(prefix="runyard-sdk-bench-"))
    stack = Stack.isolated(workdir / "stack")
    server = None
    results: dict[str, Any] = {"mlflow_version": mlflow_version, "command": command}
    try:
        stack.start()
        asyncio.run(ensure_database(stack.admin_server_url, mc.MLFLOW_DATABASE))
        server = mc.start_mlflow(
            mlflow_bin, mc.mlflow_backend_uri(stack.admin_server_url), workdir, 1
        )
        wait_healthy(server.url, 300)
        meter = mc.CpuMeter(stack, server.proc.pid, asyncpg_dsn(stack.admin_server_url))
        asyncio.run(meter.settle(quiet_cores=0.5, window_s=5.0, limit_s=300))
        key = api_key(stack)
        ry_env = {
            **mc.child_env(),
            "RUNYARD_URL": stack.gateway_url,
            "RUNYARD_API_KEY": key,
            "RUNYARD_DIR": str(workdir / "runyard"),
            "NO_PROXY": "127.0.0.1",
        }
        ml_env = {**mc.child_env(), "NO_PROXY": "127.0.0.1", **ONE_THREAD}
        ry_env.update(ONE_THREAD)
        clients = {
            "runyard": (sys.executable, ry_env, stack.gateway_url),
            "mlflow-async": (mlflow_python, ml_env, server.url),
            "mlflow": (mlflow_python, ml_env, server.url),
        }
        results["overhead"] = {}
        for kind, (python, env, url) in clients.items():
            calls = args.mlflow_sync_calls if kind == "mlflow" else args.overhead_calls
            print(f"[run] overhead: {kind}, {calls} calls", flush=True)
            results["overhead"][kind] = run_client(
                python,
                env,
                "--client",
                kind,
                "--mode",
                "overhead",
                "--url",
                url,
                "--epochs",
                str(calls),
            )
        idle = idle_rates(meter, 10.0)
        results["idle_cpu_per_s"] = idle
        results["script"] = {}
        for step_us in args.step_us:
            label = f"{args.epochs} epochs x 4 metrics, " + (
                f"a ~{step_us:.0f} µs numpy step" if step_us else "no compute (logging only)"
            )
            results["script"][label] = {}
            for kind, (python, env, url) in clients.items():
                print(f"[run] training script: {kind}, {label}", flush=True)
                results["script"][label][kind] = measured(
                    meter,
                    idle,
                    python,
                    env,
                    "--client",
                    kind,
                    "--mode",
                    "script",
                    "--url",
                    url,
                    "--epochs",
                    str(args.epochs),
                    "--step-us",
                    str(step_us),
                )
        if args.outage_s:
            print(f"[run] outage: gateway down {args.outage_s:.0f} s", flush=True)
            seconds = args.outage_s * 2
            results["outage"] = outage(stack, ry_env, seconds, args.outage_s)
            results["outage"]["server"] = on_server(stack, key, "outage-")
    finally:
        if server is not None:
            server.stop()
        stack.stop()
    info["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    results["machine"] = info
    print()
    print(f"command: {command}\nmachine: {info}; MLflow {mlflow_version}\n")
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))


def wait_healthy(url: str, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise mc.BenchError(f"mlflow server not healthy after {limit_s:.0f} s")
        time.sleep(0.5)


if __name__ == "__main__":
    try:
        main()
    except mc.BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
