"""The training-script side of bench/sdk_bench.py: one client logging from a real loop.

Runs in the workspace venv (``--client runyard``: the Runyard SDK) or in MLflow's own venv
(``--client mlflow``: ``mlflow.log_metrics(..., step=)``, synchronous; ``mlflow-async``: the
same with ``MLFLOW_ENABLE_ASYNC_LOGGING=true``). Prints ``RESULT <json>`` on stdout.

Modes:
- ``overhead``: ``--epochs`` calls of ``log()`` with 4 metrics back to back, each timed with
  ``perf_counter_ns``; then the client's end (not timed).
- ``script``: a training loop of ``--epochs`` steps (a numpy matmul of about ``--step-us``)
  first without logging, then logging 4 metrics per step: the loop's wall time with and without,
  and the time until the client's end returned (every point on the server).
- ``outage``: the ``script`` loop for ``--seconds``, recording each step's start (wall clock)
  and duration, while the caller kills and restarts the gateway.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np

METRICS = ("train_loss", "val_loss", "train_accuracy", "val_accuracy")


def metrics_of(epoch: int) -> dict[str, float]:
    return {
        "train_loss": 1 / (epoch + 1),
        "val_loss": 1.1 / (epoch + 1),
        "train_accuracy": 1 - 0.5 / (epoch + 1),
        "val_accuracy": 1 - 0.55 / (epoch + 1),
    }


def quantiles(values_us: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(values_us, n=1000, method="inclusive")
    return {
        "p50": cuts[499],
        "p99": cuts[989],
        "p999": cuts[998],
        "max": max(values_us),
        "mean": statistics.fmean(values_us),
    }


class Step:
    """A training step's compute: a matmul sized to take about ``step_us`` here."""

    def __init__(self, step_us: float) -> None:
        self.a = np.random.default_rng(1).normal(size=(128, 128))
        self.repeat = 1
        started = time.perf_counter()
        for _ in range(50):
            self()
        per_call = (time.perf_counter() - started) / 50
        self.repeat = max(1, round(step_us / 1e6 / per_call))

    def __call__(self) -> float:
        x = self.a
        for _ in range(self.repeat):
            x = np.tanh(self.a @ x)
        return float(x[0, 0])


def open_client(
    kind: str, url: str, name: str
) -> tuple[Callable[[dict[str, float], int], None], Callable[[], None]]:
    """(log(metrics, epoch), end()) for the chosen client."""
    if kind == "runyard":
        import runyard

        run = runyard.init(name=name, model_type="bench")
        return (lambda m, e: run.log(m, epoch=e)), (lambda: _check(run.finish(), "finish"))
    import mlflow

    mlflow.set_tracking_uri(url)
    mlflow.set_experiment(f"sdk-bench-{kind}")
    mlflow.start_run(run_name=name)
    synchronous = kind == "mlflow"

    def log(metrics: dict[str, float], epoch: int) -> None:
        mlflow.log_metrics(metrics, step=epoch, synchronous=synchronous)

    def end() -> None:
        mlflow.end_run()  # waits for the async queue to drain

    return log, end


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise SystemExit(f"{what} did not get everything to the server")


def overhead(kind: str, url: str, epochs: int) -> dict[str, Any]:
    log, end = open_client(kind, url, f"overhead-{uuid.uuid4().hex[:8]}")
    timings = []
    clock = time.perf_counter_ns
    for epoch in range(epochs):
        values = metrics_of(epoch)
        started = clock()
        log(values, epoch)
        timings.append((clock() - started) / 1000)
    started_end = time.perf_counter()
    end()
    return {
        "log_us": quantiles(timings),
        "calls": epochs,
        "end_s": time.perf_counter() - started_end,
    }


def script(kind: str, url: str, epochs: int, step_us: float) -> dict[str, Any]:
    step = Step(step_us) if step_us else (lambda: 0.0)

    def bare() -> float:
        began = time.perf_counter()
        for _ in range(epochs):
            step()
        return time.perf_counter() - began

    before = bare()
    log, end = open_client(kind, url, f"script-{uuid.uuid4().hex[:8]}")
    in_log = 0.0
    began = time.perf_counter()
    for epoch in range(epochs):
        step()
        values = metrics_of(epoch)
        started = time.perf_counter()
        log(values, epoch)
        in_log += time.perf_counter() - started
    loop = time.perf_counter() - began
    end()
    done = time.perf_counter() - began
    base = (before + bare()) / 2  # the same loop without logging, before and after
    return {
        "epochs": epochs,
        "points": epochs * len(METRICS),
        "step_us": step_us,
        "loop_without_logging_s": base,
        "loop_s": loop,
        "in_log_s": in_log,
        "added_s": loop - base,
        "all_on_server_s": done,
        "points_per_s": epochs * len(METRICS) / done,
    }


def outage(url: str, seconds: float, step_us: float, control: str) -> dict[str, Any]:
    step = Step(step_us)
    log, end = open_client("runyard", url, f"outage-{uuid.uuid4().hex[:8]}")
    steps: list[tuple[float, float, float]] = []  # (wall clock, step µs, of which log() µs)
    deadline = time.time() + seconds
    epoch = 0
    while time.time() < deadline:
        started_wall, started = time.time(), time.perf_counter()
        step()
        before_log = time.perf_counter()
        log(metrics_of(epoch), epoch)
        done = time.perf_counter()
        steps.append((started_wall, (done - started) * 1e6, (done - before_log) * 1e6))
        epoch += 1
    with open(control, "w") as out:  # the caller restarts the gateway before we end
        out.write("done")
    while not os.path.exists(control + ".go"):
        time.sleep(0.05)
    began = time.perf_counter()
    end()
    return {"epochs": epoch, "steps": steps, "end_s": time.perf_counter() - began}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--client", choices=["runyard", "mlflow", "mlflow-async"], required=True)
    parser.add_argument("--mode", choices=["overhead", "script", "outage"], required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--epochs", type=int, default=2000)
    parser.add_argument("--step-us", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--control", default="")
    args = parser.parse_args()
    if args.client == "mlflow-async":
        os.environ["MLFLOW_ENABLE_ASYNC_LOGGING"] = "true"
    if args.mode == "overhead":
        result = overhead(args.client, args.url, args.epochs)
    elif args.mode == "script":
        result = script(args.client, args.url, args.epochs, args.step_us)
    else:
        result = outage(args.url, args.seconds, args.step_us, args.control)
    # one marked line: MLflow prints its own lines ("View run ... at ...") on stdout
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
