"""Alert rules on the real service: each kind fires on a crafted history and not on a near
miss; out-of-order batches are evaluated in epoch order; a redelivered event fires nothing
twice; cooldown and re-arming; backtest equals live; validation names the field.

Events go through the service's own consumer code (the shared inbox, real PostgreSQL) with
``deliver_own_events``, after ``write_epoch_events`` wrote the pending ``epochs_logged``."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from runyard.experiments.alerts import service as alert_service
from runyard.shared.db import create_engine, create_sessionmaker
from services.experiments.tests.experiments_helpers import (
    Caller,
    act,
    deliver_own_events,
    fetch,
    new_experiment,
    outbox,
    write_epoch_events,
)

RULES = "/api/v1/alert-rules"


async def new_rule(client: Any, who: Caller, condition: dict[str, Any], **fields: Any) -> dict:
    body = {"name": f"rule-{uuid.uuid4().hex[:8]}", "condition": condition, **fields}
    response = await client.post(RULES, json=body, headers=who.headers)
    assert response.status_code == 201, response.text
    rule: dict[str, Any] = response.json()
    return rule


async def log(client: Any, who: Caller, experiment: dict, runs: list[dict[str, Any]]) -> None:
    response = await client.post(
        f"/api/v1/experiments/{experiment['id']}/runs", json={"runs": runs}, headers=who.headers
    )
    assert response.status_code in (200, 201), response.text


async def deliver(db: Any) -> None:
    """The pending epoch events written and every new outbox event consumed, as the service's
    worker and consumer would."""
    await write_epoch_events(db)
    await deliver_own_events(db)


async def alerts_of(client: Any, who: Caller, experiment: dict, **params: Any) -> list[dict]:
    response = await client.get(
        "/api/v1/alerts", params={"experiment_id": experiment["id"], **params}, headers=who.headers
    )
    assert response.status_code == 200, response.text
    return list(reversed(response.json()["items"]))  # oldest first


def series(metric: str, values: list[float], first: int = 1, **other: list[float]) -> list[dict]:
    return [
        {
            "epoch": first + i,
            metric: v,
            **{name: vals[i] for name, vals in other.items()},
        }
        for i, v in enumerate(values)
    ]


# --- each kind: fires on a crafted history, not on a near miss --------------------------------

KINDS = {
    "threshold": (
        {"kind": "threshold", "metric": "val_accuracy", "op": ">=", "value": 0.95},
        series("val_accuracy", [0.90, 0.93, 0.951, 0.96]),
        series("val_accuracy", [0.90, 0.93, 0.949, 0.94]),
        3,
        "val_accuracy reached 0.95 in {name}: 0.951 (epoch 3)",
    ),
    "plateau": (
        {"kind": "plateau", "metric": "val_loss", "epochs": 3, "min_delta": 0.01},
        series("val_loss", [1.0, 0.8, 0.795, 0.79, 0.792]),
        series("val_loss", [1.0, 0.8, 0.795, 0.78, 0.779]),
        5,
        "val_loss plateaued in {name}: no improvement on 0.8 (epoch 2) for 3 epochs (epoch 5)",
    ),
    "divergence": (
        {"kind": "divergence", "metric": "val_loss", "epochs": 2, "percent": 30},
        series("val_loss", [1.0, 0.5, 0.55, 0.7]),
        series("val_loss", [1.0, 0.5, 0.55, 0.64]),
        4,
        "val_loss diverged in {name}: +40 % over 2 epochs (epoch 4)",
    ),
    "gap": (
        {"kind": "gap", "val_metric": "val_loss", "train_metric": "train_loss", "gap": 0.25},
        series("val_loss", [0.6, 0.6, 0.75], train_loss=[0.5, 0.45, 0.25]),
        series("val_loss", [0.6, 0.6, 0.74], train_loss=[0.5, 0.45, 0.5]),
        3,
        "val_loss - train_loss gap in {name}: 0.5 > 0.25 (epoch 3)",
    ),
}


@pytest.mark.parametrize("kind", list(KINDS))
async def test_each_metric_kind_fires_on_its_history_and_not_on_a_near_miss(
    client, db, alice, kind: str
) -> None:
    condition, hit, miss, epoch, summary = KINDS[kind]
    rule = await new_rule(client, alice, condition, severity="critical")
    fired = await new_experiment(client, alice)
    quiet = await new_experiment(client, alice)
    await log(client, alice, fired, hit)
    await log(client, alice, quiet, miss)
    await deliver(db)

    [alert] = await alerts_of(client, alice, fired)
    assert (alert["status"], alert["epoch"], alert["rule_id"]) == ("triggered", epoch, rule["id"])
    assert alert["summary"] == summary.format(name=fired["name"])
    assert alert["severity"] == "critical" and alert["kind"] == kind
    assert await alerts_of(client, alice, quiet) == []
    [event] = [e for e in await outbox(db) if e["type"] == "alert.triggered"]
    assert event["data"]["alert_id"] == alert["id"]
    assert event["data"]["summary"] == alert["summary"]
    assert event["data"]["name"] == fired["name"] and event["data"]["epoch"] == epoch
    assert event["subject"] == fired["id"]


async def test_a_non_finite_metric_logged_through_mlflow_fires(client, db, alice) -> None:
    await new_rule(client, alice, {"kind": "not_finite", "metric": "loss"})
    runs = []
    for name in ("nan-run", "finite-run"):
        created = await client.post(
            "/api/2.0/mlflow/runs/create",
            json={"experiment_id": "0", "run_name": name, "start_time": 1_700_000_000_000},
            headers=alice.headers,
        )
        assert created.status_code == 200, created.text
        runs.append(created.json()["run"]["info"]["run_id"])
    for run_id, bad in zip(runs, ("NaN", 0.4), strict=True):
        metrics = [
            {"key": "loss", "value": v, "step": s, "timestamp": 1_700_000_000_000 + s}
            for s, v in ((0, 0.9), (1, 0.6), (2, bad))
        ] + [{"key": "acc", "value": 0.5, "step": 2, "timestamp": 1_700_000_000_002}]
        response = await client.post(
            "/api/2.0/mlflow/runs/log-batch",
            json={"run_id": run_id, "metrics": metrics},
            headers=alice.headers,
        )
        assert response.status_code == 200, response.text
    await deliver(db)

    [alert] = await alerts_of(client, alice, {"id": runs[0]})
    assert (alert["epoch"], alert["values"]) == (2, {"loss": "NaN"})
    assert alert["summary"].startswith("loss became NaN in ")
    assert await alerts_of(client, alice, {"id": runs[1]}) == []


@pytest.mark.parametrize(
    ("condition", "action", "body", "fires"),
    [
        ({"kind": "lifecycle", "event": "failed"}, "fail", {"error": "CUDA out of memory"}, True),
        ({"kind": "lifecycle", "event": "failed"}, "complete", {}, False),
        (
            {
                "kind": "lifecycle",
                "event": "completed",
                "metric": "val_accuracy",
                "op": "<",
                "value": 0.9,
            },
            "complete",
            {"final_metrics": {"val_accuracy": 0.85}},
            True,
        ),
        (
            {
                "kind": "lifecycle",
                "event": "completed",
                "metric": "val_accuracy",
                "op": "<",
                "value": 0.9,
            },
            "complete",
            {"final_metrics": {"val_accuracy": 0.91}},
            False,
        ),
    ],
)
async def test_lifecycle_rules(client, db, alice, condition, action, body, fires) -> None:
    await new_rule(client, alice, condition)
    experiment = await new_experiment(client, alice)
    assert (await act(client, alice, experiment["id"], "start")).status_code == 200
    response = await act(client, alice, experiment["id"], action, **body)
    assert response.status_code == 200, response.text
    await deliver(db)
    found = await alerts_of(client, alice, experiment)
    assert len(found) == (1 if fires else 0)
    if fires and action == "fail":
        assert found[0]["summary"] == f"{experiment['name']} failed: CUDA out of memory"
    if fires and action == "complete":
        assert found[0]["summary"] == (
            f"{experiment['name']} completed with val_accuracy 0.85 (< 0.9)"
        )


# --- order, redelivery, cooldown, re-arming ----------------------------------------------------

PLATEAU = {"kind": "plateau", "metric": "val_loss", "epochs": 4, "min_delta": 0.0}
DIVERGENCE = {"kind": "divergence", "metric": "val_loss", "epochs": 3, "percent": 20}
#: val_loss over 20 epochs: falls, stalls (plateau fires at 12), then rises (divergence at 18)
LOSS = [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.45, 0.4, 0.4, 0.41, 0.42, 0.4]
LOSS += [0.43, 0.44, 0.45, 0.47, 0.5, 0.6, 0.7, 0.8]


def fired(alerts: list[dict]) -> list[tuple[str, str, int]]:
    return sorted((a["rule_name"], a["status"], a["epoch"]) for a in alerts)


async def test_batches_out_of_order_are_evaluated_in_epoch_order(client, db, alice) -> None:
    await new_rule(client, alice, PLATEAU, name="plateau", rearm=True)
    await new_rule(client, alice, DIVERGENCE, name="divergence", rearm=True)
    history = series("val_loss", LOSS)
    in_order = await new_experiment(client, alice)
    shuffled = await new_experiment(client, alice)
    for first, last in ((1, 6), (7, 14), (15, 20)):
        await log(client, alice, in_order, history[first - 1 : last])
        await deliver(db)
    # an SDK resend: 7-14 failed and came after 15-20; each batch is its own event
    for first, last in ((1, 6), (15, 20), (7, 14)):
        await log(client, alice, shuffled, history[first - 1 : last])
        await deliver(db)

    expected = fired(await alerts_of(client, alice, in_order))
    assert ("plateau", "triggered", 12) in expected
    assert ("divergence", "triggered", 18) in expected
    assert fired(await alerts_of(client, alice, shuffled)) == expected


async def test_a_redelivered_event_fires_nothing_twice(client, db, alice, settings) -> None:
    rule = await new_rule(client, alice, KINDS["threshold"][0])
    experiment = await new_experiment(client, alice)
    await log(client, alice, experiment, KINDS["threshold"][1])
    await deliver(db)
    assert await deliver_own_events(db) == 0  # the inbox knows every event
    # the same evaluation run again (a new event of the same epochs: a resent batch): the
    # rule's state knows them
    engine = create_engine(db.url, pool_size=1)
    try:
        sessionmaker = create_sessionmaker(engine, schema="experiments")
        async with sessionmaker() as session, session.begin():
            again = await alert_service.evaluate_epochs(
                session, experiment_id=uuid.UUID(experiment["id"]), owner_id=alice.id
            )
    finally:
        await engine.dispose()
    assert again == 0
    await log(client, alice, experiment, KINDS["threshold"][1])  # identical values again
    await deliver(db)
    assert len(await alerts_of(client, alice, experiment, rule_id=rule["id"])) == 1
    rows = await fetch(
        db, "SELECT count(*) AS n FROM experiments.outbox WHERE topic = $1", "alert.triggered"
    )
    assert rows[0]["n"] == 1


#: above 1.0 at epochs 2, 5 and 8; below in between
SPIKES = series("val_loss", [0.5, 1.5, 0.5, 0.5, 1.5, 0.5, 0.5, 1.5, 0.5])
ABOVE_ONE = {"kind": "threshold", "metric": "val_loss", "op": ">", "value": 1.0}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, [("triggered", 2)]),
        (
            {"rearm": True},
            [
                ("triggered", 2),
                ("resolved", 3),
                ("triggered", 5),
                ("resolved", 6),
                ("triggered", 8),
                ("resolved", 9),
            ],
        ),
        # epochs logged within seconds: a day's cooldown allows one alert; it still clears
        ({"rearm": True, "cooldown_s": 86400}, [("triggered", 2), ("resolved", 3)]),
    ],
)
async def test_fire_once_rearm_and_cooldown(client, db, alice, fields, expected) -> None:
    await new_rule(client, alice, ABOVE_ONE, **fields)
    experiment = await new_experiment(client, alice)
    for start in (0, 3, 6):
        await log(client, alice, experiment, SPIKES[start : start + 3])
        await deliver(db)
    found = await alerts_of(client, alice, experiment)
    assert [(a["status"], a["epoch"]) for a in found] == expected
    types = [e["type"] for e in await outbox(db) if e["type"].startswith("alert.")]
    assert types == [f"alert.{status}" for status, _ in expected]


async def test_a_rule_watches_only_what_its_scope_holds(client, db, alice, bob) -> None:
    project = (
        await client.post("/api/v1/projects", json={"name": "pumps"}, headers=alice.headers)
    ).json()
    await new_rule(
        client,
        alice,
        ABOVE_ONE,
        name="in project",
        scope={"type": "project", "project_id": project["id"]},
    )
    await new_rule(
        client,
        alice,
        ABOVE_ONE,
        name="cnn only",
        scope={"type": "filter", "filter": "model_type = 'cnn1d'"},
    )
    inside = await new_experiment(client, alice, project=project["id"], model_type="cnn1d")
    outside = await new_experiment(client, alice, model_type="lstm")
    others = await new_experiment(client, bob, model_type="cnn1d")
    for who, experiment in ((alice, inside), (alice, outside), (bob, others)):
        await log(client, who, experiment, SPIKES[:3])
    await deliver(db)
    assert sorted(a["rule_name"] for a in await alerts_of(client, alice, inside)) == [
        "cnn only",
        "in project",
    ]
    assert await alerts_of(client, alice, outside) == []
    assert await alerts_of(client, bob, others) == []


# --- backtest ----------------------------------------------------------------------------------


async def test_backtest_reports_what_live_evaluation_fired(client, db, alice) -> None:
    rules = [
        await new_rule(client, alice, PLATEAU, rearm=True),
        await new_rule(client, alice, DIVERGENCE, rearm=True, cooldown_s=0),
        await new_rule(client, alice, ABOVE_ONE, rearm=True),
    ]
    experiments = [await new_experiment(client, alice) for _ in range(2)]
    for i, experiment in enumerate(experiments):
        history = series("val_loss", LOSS) if i == 0 else SPIKES
        for start in range(0, len(history), 4):
            await log(client, alice, experiment, history[start : start + 4])
            await deliver(db)

    for rule in rules:
        live = []
        for experiment in experiments:
            live += [
                (experiment["id"], a["status"], a["epoch"], a["summary"], a["values"])
                for a in await alerts_of(client, alice, experiment, rule_id=rule["id"])
            ]
        response = await client.post(
            f"{RULES}/{rule['id']}/backtest", json={}, headers=alice.headers
        )
        assert response.status_code == 200, response.text
        result = response.json()
        assert result["experiments_evaluated"] == 2
        backtested = [
            (f["experiment_id"], f["status"], f["epoch"], f["summary"], f["values"])
            for f in result["firings"]
        ]
        assert sorted(backtested, key=str) == sorted(live, key=str)
        assert live  # every rule fired somewhere
    # a backtest stores nothing
    assert (await fetch(db, "SELECT count(*) AS n FROM experiments.alerts"))[0]["n"] == sum(
        [len(await alerts_of(client, alice, e)) for e in experiments]
    )


# --- the API -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        (
            {"condition": {"kind": "threshold", "metric": "val_loss", "op": "==", "value": 1}},
            ["body", "condition", "threshold", "op"],
        ),
        (
            {"condition": {"kind": "divergence", "metric": "val_loss", "epochs": 3, "percent": -5}},
            ["body", "condition", "divergence", "percent"],
        ),
        (
            {"condition": {"kind": "plateau", "metric": "val_loss", "epochs": 0}},
            ["body", "condition", "plateau", "epochs"],
        ),
        ({"condition": {"kind": "sometimes", "metric": "x"}}, ["body", "condition"]),
        (
            {"condition": {"kind": "threshold", "metric": "val_loss", "op": ">"}},
            ["body", "condition", "threshold", "value"],
        ),
        (
            {"condition": {"kind": "not_finite", "metric": "loss"}, "severity": "panic"},
            ["body", "severity"],
        ),
        (
            {"condition": {"kind": "not_finite", "metric": "loss"}, "cooldown_s": -1},
            ["body", "cooldown_s"],
        ),
        (
            {
                "condition": {"kind": "not_finite", "metric": "loss"},
                "scope": {"type": "filter", "filter": "status = = 'x'"},
            },
            ["body", "scope", "filter", "filter"],
        ),
        (
            {
                "condition": {"kind": "not_finite", "metric": "loss"},
                "scope": {"type": "project", "project_id": str(uuid.uuid4())},
            },
            ["body", "scope", "project", "project_id"],
        ),
        (
            {
                "condition": {
                    "kind": "lifecycle",
                    "event": "failed",
                    "metric": "val_loss",
                    "op": ">",
                    "value": 1,
                }
            },
            ["body", "condition", "lifecycle"],
        ),
    ],
)
async def test_invalid_rules_are_422_naming_the_field(client, db, alice, body, loc) -> None:
    response = await client.post(RULES, json={"name": "bad", **body}, headers=alice.headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["errors"][0]["loc"][: len(loc)] == loc
    assert (await fetch(db, "SELECT count(*) AS n FROM experiments.alert_rules"))[0]["n"] == 0


async def test_rules_crud_and_ownership(client, alice, bob) -> None:
    # an unknown metric is fine: it may appear later
    rule = await new_rule(
        client,
        alice,
        {"kind": "threshold", "metric": "not_yet_logged", "op": "<", "value": 2},
        name="mine",
    )
    assert rule["condition"] == {
        "kind": "threshold",
        "metric": "not_yet_logged",
        "op": "<",
        "value": 2.0,
    }
    assert rule["scope"] == {"type": "all"} and rule["rearm"] is False
    same_name = await client.post(
        RULES, json={"name": "mine", "condition": rule["condition"]}, headers=alice.headers
    )
    assert same_name.status_code == 409
    url = f"{RULES}/{rule['id']}"
    assert (await client.get(url, headers=bob.headers)).status_code == 404
    assert (await client.post(f"{url}/backtest", headers=bob.headers)).status_code == 404
    changed = await client.patch(
        url, json={"severity": "info", "rearm": True, "cooldown_s": 60}, headers=alice.headers
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["severity"], changed.json()["version"]) == ("info", 2)
    bad = await client.patch(url, json={"condition": {"kind": "plateau"}}, headers=alice.headers)
    assert bad.status_code == 422
    listed = (await client.get(RULES, headers=alice.headers)).json()["items"]
    assert [r["id"] for r in listed] == [rule["id"]]
    assert (await client.get(RULES, headers=bob.headers)).json()["items"] == []
    assert (await client.delete(url, headers=bob.headers)).status_code == 404
    assert (await client.delete(url, headers=alice.headers)).status_code == 204
    assert (await client.get(url, headers=alice.headers)).status_code == 404


async def test_a_new_rule_alerts_only_on_epochs_logged_after_it(client, db, alice) -> None:
    experiment = await new_experiment(client, alice)
    await log(client, alice, experiment, SPIKES[:3])  # above 1 at epoch 2, before the rule
    await deliver(db)
    await new_rule(client, alice, ABOVE_ONE, rearm=True)
    await log(client, alice, experiment, SPIKES[3:6])  # above 1 at epoch 5
    await deliver(db)
    assert [(a["status"], a["epoch"]) for a in await alerts_of(client, alice, experiment)] == [
        ("triggered", 5),
        ("resolved", 6),
    ]
