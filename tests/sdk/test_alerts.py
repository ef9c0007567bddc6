"""Alerts from the SDK and the CLI against the whole stack: a threshold rule on one run fires
when the run logs an epoch past it (evaluated by the experiments service from
``experiment.epochs_logged``), and ``run.alerts()``, ``runyard.alerts(...)`` and
``runyard alerts --experiment`` return that alert, typed; a rule whose threshold is never
crossed returns nothing."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import httpx
import pytest

import runyard
from runyard.sdk import Alert

from .conftest import runyard as cli
from .conftest import wait_until

pytestmark = pytest.mark.sdk


def rule(server: httpx.Client, name: str, experiment_id: str, **condition: Any) -> dict[str, Any]:
    created = server.post(
        "/alert-rules",
        json={
            "name": name,
            "severity": "critical",
            "condition": {"kind": "threshold", **condition},
            "scope": {"type": "experiment", "experiment_id": experiment_id},
        },
    )
    assert created.status_code == 201, created.text
    found: dict[str, Any] = created.json()
    return found


def test_a_runs_alerts_come_back_from_run_alerts_the_module_and_the_cli(
    server: httpx.Client, sdk_env: dict[str, str], env: dict[str, str]
) -> None:
    with runyard.init(name="alerting run", best_metric="val_accuracy") as run:
        experiment_id = str(run.id)
        fired = rule(
            server, "accuracy reached", experiment_id, metric="val_accuracy", op=">=", value=0.9
        )
        rule(server, "never reached", experiment_id, metric="val_accuracy", op=">=", value=0.999)
        assert run.alerts() == []  # nothing logged yet
        for epoch in range(1, 6):
            run.log({"val_accuracy": 0.8 + epoch / 40, "train_loss": 1 / epoch}, epoch=epoch)
        # epoch 4 (0.9) crosses 0.9; evaluation follows the epochs' event, a moment later
        alerts = wait_until(run.alerts, "the run's alert", timeout=60)

    assert len(alerts) == 1, alerts
    alert = alerts[0]
    assert isinstance(alert, Alert)
    assert alert.rule_id == fired["id"] and alert.rule_name == "accuracy reached"
    assert alert.kind == "threshold" and alert.severity == "critical"
    assert alert.status == "triggered"
    assert alert.experiment_id == experiment_id and alert.experiment_name == "alerting run"
    assert alert.epoch == 4
    assert "val_accuracy" in json.dumps(alert.values) and alert.summary
    assert isinstance(alert.created_at, datetime) and alert.created_at.tzinfo is not None
    assert str(alert).startswith("[critical] ")

    # after the run ended too, and from the module with its filters
    assert run.alerts() == alerts
    assert run.alerts(status="resolved") == []
    assert runyard.alerts(experiment_id=experiment_id) == alerts
    assert runyard.alerts(rule_id=fired["id"], limit=1) == alerts
    with pytest.raises(ValueError):
        run.alerts(status="firing")

    # the command line: a table, JSON, and a one-line error
    table = cli(env, "alerts", "--experiment", experiment_id)
    assert table.returncode == 0, table.stderr
    assert "accuracy reached" in table.stdout and "never reached" not in table.stdout
    assert "alerting run" in table.stdout and "critical" in table.stdout
    by_name = cli(env, "alerts", "--experiment", "alerting run", "--json")
    assert by_name.returncode == 0, by_name.stderr
    listed = json.loads(by_name.stdout)
    assert [a["id"] for a in listed] == [alert.id] and listed[0]["epoch"] == 4
    missing = cli(env, "alerts", "--experiment", "no such run anywhere")
    assert missing.returncode == 1
    assert missing.stderr.count("\n") == 1 and "runyard: error:" in missing.stderr
