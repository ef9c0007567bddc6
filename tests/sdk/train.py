"""A real training loop for the SDK's tests: logistic regression in numpy on a synthetic
two-class problem (full-batch gradient descent), logged with ``runyard``.

After each ``log()`` returns, the epoch and the values logged are appended to ``--progress``
(one JSON line), so a test knows exactly what the script handed to the SDK. ``--hold-at
EPOCH:GATE`` makes the loop wait after that epoch until the file GATE exists in ``--gates``: the
test's way of doing something (killing the gateway, killing this process) at a known point.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

import runyard


def data(seed: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(600, 8))
    w = rng.normal(size=8)
    y = (x @ w + 0.5 * rng.normal(size=600) > 0).astype(float)
    return x[:480], y[:480], x[480:], y[480:]


def loss_and_accuracy(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    p = 1 / (1 + np.exp(-(x @ w)))
    eps = 1e-9
    loss = -np.mean(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps))
    return float(loss), float(np.mean((p > 0.5) == y))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", default=None)
    parser.add_argument("--resume", default=None, help="an experiment id to log to again")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--first-epoch", type=int, default=1)
    parser.add_argument("--lr", type=float, default=0.5)
    parser.add_argument("--progress", type=Path, required=True)
    parser.add_argument("--gates", type=Path, required=True)
    parser.add_argument("--hold-at", action="append", default=[], metavar="EPOCH:GATE")
    parser.add_argument("--flush-at", type=int, action="append", default=[])
    parser.add_argument("--exit-at", type=int, default=None, help="os._exit(0) after the epoch")
    parser.add_argument("--fail-at", type=int, default=None, help="raise after the epoch")
    parser.add_argument("--tag", action="append", default=[])
    parser.add_argument("--note", default=None)
    args = parser.parse_args()
    holds = {int(e): g for e, g in (h.split(":", 1) for h in args.hold_at)}

    x, y, vx, vy = data()
    w = np.zeros(x.shape[1])
    progress = os.open(args.progress, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    if args.resume:
        run = runyard.resume(args.resume)
    else:
        run = runyard.init(
            name=args.name,
            model_type="logreg",
            hyperparameters={"lr": args.lr, "features": int(x.shape[1])},
            tags=args.tag,
        )
    print(f"experiment {run.id} local {run.local_id}", flush=True)
    with run:
        if args.note:
            run.note(args.note)
        for epoch in range(args.first_epoch, args.first_epoch + args.epochs):
            started = time.perf_counter()
            p = 1 / (1 + np.exp(-(x @ w)))
            w -= args.lr * x.T @ (p - y) / len(y)
            train_loss, train_accuracy = loss_and_accuracy(w, x, y)
            val_loss, val_accuracy = loss_and_accuracy(w, vx, vy)
            values = {
                "train_loss": train_loss,
                "val_loss": val_loss,
                "train_accuracy": train_accuracy,
                "val_accuracy": val_accuracy,
                "weight_norm": float(np.linalg.norm(w)),
            }
            run.log(values, epoch=epoch)
            step_us = (time.perf_counter() - started) * 1e6
            line = {"epoch": epoch, "values": values, "step_us": step_us}
            os.write(progress, (json.dumps(line) + "\n").encode())
            if epoch in args.flush_at:
                print(f"flushed {epoch} {run.flush(60)}", flush=True)
            if args.exit_at == epoch:
                os._exit(0)
            if args.fail_at == epoch:
                raise RuntimeError(f"diverged at epoch {epoch}")
            if epoch in holds:
                gate = args.gates / holds[epoch]
                while not gate.exists():
                    time.sleep(0.02)
        run.summary(final_metrics={"val_accuracy": val_accuracy})
    return 0


if __name__ == "__main__":
    sys.exit(main())
