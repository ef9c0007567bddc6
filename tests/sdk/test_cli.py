"""(f) The ``runyard`` command against the stack, as a shell user runs it: output, exit codes,
one-line errors."""

from __future__ import annotations

import csv
import io
import json
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

import runyard

from .conftest import Account, epochs_on_server
from .conftest import runyard as cli

pytestmark = pytest.mark.sdk


@pytest.fixture
def two_runs(sdk_env: dict[str, str]) -> tuple[str, str]:
    ids = []
    for name, lr, slope in (("cli small lr", 0.01, 0.01), ("cli big lr", 0.1, 0.02)):
        with runyard.init(
            name=name,
            model_type="mlp",
            hyperparameters={"lr": lr, "depth": 3},
            best_metric="val_accuracy",
            tags=["cli"],
        ) as run:
            for epoch in range(1, 13):
                run.log(
                    {"val_accuracy": 0.5 + slope * epoch, "train_loss": 1 / epoch, "gnorm": epoch},
                    epoch=epoch,
                )
        ids.append(str(run.id))
    return ids[0], ids[1]


def test_login_and_whoami(env: dict[str, str], account: Account) -> None:
    bare = {k: v for k, v in env.items() if k not in ("RUNYARD_URL", "RUNYARD_API_KEY")}
    missing = cli(bare, "whoami")
    assert missing.returncode == 1
    assert (
        missing.stderr.startswith("runyard: error: no API key")
        and "Traceback" not in missing.stderr
    )

    logged_in = cli(
        bare, "--url", account.url, "login", "--api-key-stdin", stdin=account.api_key + "\n"
    )
    assert logged_in.returncode == 0, logged_in.stderr
    assert f"Logged in to {account.url} as {account.username}" in logged_in.stdout
    stored = Path(env["XDG_CONFIG_HOME"]) / "runyard" / "config.json"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert json.loads(stored.read_text()) == {"url": account.url, "api_key": account.api_key}

    me = cli(bare, "whoami")  # from the stored login alone
    assert me.returncode == 0, me.stderr
    assert me.stdout.startswith(f"{account.username} <{account.username}@example.test> (user) at ")

    refused = cli(bare, "--url", account.url, "login", "--api-key-stdin", stdin="ry_wrong\n")
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1 and "401" in refused.stderr
    assert json.loads(stored.read_text())["api_key"] == account.api_key  # kept the good one

    down = cli({**bare, "RUNYARD_URL": "http://127.0.0.1:9"}, "whoami")
    assert down.returncode == 3
    assert down.stderr.startswith("runyard: error: cannot reach http://127.0.0.1:9")


def test_ls_show_runs_compare_export(
    env: dict[str, str], two_runs: tuple[str, str], tmp_path: Path
) -> None:
    small, big = two_runs
    table = cli(
        env,
        "experiments",
        "ls",
        "model_type = 'mlp' and metrics.val_accuracy > 0.6",
        "--order-by",
        "metrics.val_accuracy desc",
    )
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["ID", "NAME", "STATUS", "MODEL", "EPOCHS", "BEST", "CREATED"]
    assert [line.split()[0] for line in lines[1:]] == [big, small]
    assert "val_accuracy=0.74" in lines[1] and "completed" in lines[1]

    as_json = cli(env, "experiments", "ls", "--tag", "cli", "--order-by", "name", "--json")
    assert [e["name"] for e in json.loads(as_json.stdout)] == ["cli big lr", "cli small lr"]

    bad = cli(env, "experiments", "ls", "metrics.val_accuracy >")
    assert bad.returncode == 1 and bad.stderr.startswith("runyard: error: 400")
    assert bad.stderr.count("\n") == 1

    shown = cli(env, "show", "cli small lr")  # by name as well as by id
    assert shown.returncode == 0, shown.stderr
    assert f"id          {small}" in shown.stdout
    assert "best        val_accuracy (max) = 0.62 at epoch 12" in shown.stdout
    assert "  lr = 0.01" in shown.stdout

    missing = cli(env, "show", "00000000-0000-0000-0000-000000000000")
    assert (missing.returncode, missing.stderr) == (
        1,
        "runyard: error: no experiment 00000000-0000-0000-0000-000000000000\n",
    )

    runs = cli(env, "runs", small)
    assert runs.stdout.splitlines()[0].split() == ["EPOCH", "train_loss", "val_accuracy", "gnorm"]
    assert len(runs.stdout.splitlines()) == 13
    rows = list(csv.DictReader(io.StringIO(cli(env, "runs", small, "--csv").stdout)))
    assert [int(r["epoch"]) for r in rows] == list(range(1, 13))
    assert float(rows[0]["val_accuracy"]) == 0.51

    compared = cli(env, "compare", small, big)
    assert compared.returncode == 0, compared.stderr
    text = compared.stdout
    assert "cli small lr" in text.splitlines()[0] and "cli big lr" in text.splitlines()[0]
    assert any(
        line.startswith("* params.lr") and "0.01" in line and "0.1" in line
        for line in text.splitlines()
    )
    assert any(line.startswith("  params.depth") for line in text.splitlines())  # same in both

    target = tmp_path / "big.jsonl"
    exported = cli(env, "export", big, "--format", "jsonl", "-o", str(target))
    assert exported.returncode == 0 and "12 epochs written" in exported.stderr
    lines_out = [json.loads(line) for line in target.read_text().splitlines()]
    assert lines_out[0] == {"epoch": 1, "gnorm": 1.0, "train_loss": 1.0, "val_accuracy": 0.52}
    as_csv = cli(env, "export", big)
    assert as_csv.stdout.splitlines()[0] == "epoch,train_loss,val_accuracy,gnorm"


def test_tail_follows_a_live_run(
    sdk_env: dict[str, str], env: dict[str, str], server: httpx.Client
) -> None:
    run = runyard.init(name="followed", best_metric="val_loss")
    for epoch in range(1, 4):
        run.log({"val_loss": 1.0 / epoch}, epoch=epoch)
    assert run.flush(30)
    follow = subprocess.Popen(
        [sys.executable, "-m", "runyard.sdk.cli", "tail", "-f", str(run.id), "--interval", "0.2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert follow.stdout is not None
        assert follow.stdout.readline().startswith("followed (running): sparkline of val_loss")
        first = [follow.stdout.readline() for _ in range(3)]
        assert [line.split()[1] for line in first] == ["1", "2", "3"]
        for epoch in range(4, 7):  # arrive while tail is following
            run.log({"val_loss": 1.0 / epoch}, epoch=epoch)
        assert run.flush(30)
        new = [follow.stdout.readline() for _ in range(3)]
        assert [line.split()[1] for line in new] == ["4", "5", "6"]
        assert "val_loss=0.1667" in new[-1]
        assert new[-1].rstrip().endswith("  █▄▂▂▁▁")  # 1, 1/2 ... 1/6 on 8 levels
        run.finish()
        rest, err = follow.communicate(timeout=60)
    finally:
        if follow.poll() is None:
            follow.kill()
    assert follow.returncode == 0, err
    assert rest.strip() == "experiment completed"
    assert [r["epoch"] for r in epochs_on_server(server, str(run.id))] == [1, 2, 3, 4, 5, 6]
