"""HPO campaigns driven by a test acting as the training loop: suggest, train (log epochs),
complete or fail; the campaign learns each result from the experiment's own event."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

from runyard.experiments.main import create_app
from runyard.shared.testing import running_app
from services.experiments.tests.experiments_helpers import (
    act,
    deliver_own_events,
    event_types,
    fetch,
    outbox,
)

SPACE = {
    "learning_rate": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True},
    "batch_size": {"type": "int", "low": 16, "high": 128, "step": 16},
    "optimizer": {"type": "categorical", "choices": ["adam", "sgd", "adamw"]},
}


def accuracy_of(params: dict[str, Any]) -> float:
    """The 'model' the fake training loop trains: best near lr=1e-3, batch 64, adamw."""
    lr_term = abs(math.log10(params["learning_rate"]) + 3) / 4
    batch_term = abs(params["batch_size"] - 64) / 112
    bonus = {"adamw": 0.05, "adam": 0.03, "sgd": 0.0}[params["optimizer"]]
    return round(0.9 - 0.3 * lr_term - 0.1 * batch_term + bonus, 6)


async def new_campaign(client, who, **fields: Any) -> dict[str, Any]:
    body = {
        "name": f"search-{fields.get('method', 'random')}",
        "method": "random",
        "search_space": SPACE,
        "budget": {"max_trials": 4},
        "metric": "val_accuracy",
        "base_model_type": "cnn1d",
        "base_hyperparameters": {"epochs": 3},
        "seed": 7,
        **fields,
    }
    response = await client.post("/api/v1/hpo-campaigns", json=body, headers=who.headers)
    assert response.status_code == 201, response.text
    return response.json()


async def suggest(client, who, campaign_id: str) -> Any:
    return await client.post(f"/api/v1/hpo-campaigns/{campaign_id}/suggest", headers=who.headers)


async def train(client, who, suggestion: dict[str, Any], *, fail: bool = False) -> float:
    """Log three epochs approaching the final accuracy, then complete (or fail) the trial."""
    experiment_id = suggestion["experiment"]["id"]
    final = accuracy_of(suggestion["params"])
    runs = [{"epoch": e, "val_accuracy": round(final - 0.1 * (2 - e), 6)} for e in range(3)]
    response = await client.post(
        f"/api/v1/experiments/{experiment_id}/runs", json={"runs": runs}, headers=who.headers
    )
    assert response.status_code == 201, response.text
    if fail:
        response = await act(client, who, experiment_id, "fail", error="diverged")
    else:
        response = await act(client, who, experiment_id, "complete")
    assert response.status_code == 200, response.text
    return final


async def campaign_of(client, who, campaign_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/v1/hpo-campaigns/{campaign_id}", headers=who.headers)
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def in_space(params: dict[str, Any]) -> bool:
    return (
        1e-5 <= params["learning_rate"] <= 1e-1
        and params["batch_size"] in range(16, 129, 16)
        and params["optimizer"] in ("adam", "sgd", "adamw")
    )


@pytest.mark.parametrize("method", ["random", "bayesian"])
async def test_a_campaign_driven_by_the_training_loop_completes_with_the_best_trial(
    client, db, alice, method
) -> None:
    campaign = await new_campaign(client, alice, method=method, budget={"max_trials": 4})
    results: dict[str, float] = {}
    for number in range(4):
        response = await suggest(client, alice, campaign["id"])
        assert response.status_code == 201, response.text
        suggestion = response.json()
        assert suggestion["trial_number"] == number
        assert in_space(suggestion["params"])
        experiment = suggestion["experiment"]
        assert experiment["status"] == "pending"
        assert experiment["hyperparameters"] == {"epochs": 3, **suggestion["params"]}
        assert experiment["model_type"] == "cnn1d"
        results[experiment["id"]] = await train(client, alice, suggestion)
        # the trial's experiment.completed, and its epochs' experiment.epochs_logged (which the
        # service's alert rules consume)
        assert await deliver_own_events(db) == 2
        assert (await campaign_of(client, alice, campaign["id"]))["trials_completed"] == number + 1

    done = await campaign_of(client, alice, campaign["id"])
    best_id = max(results, key=lambda k: results[k])
    assert done["status"] == "completed"
    assert done["completion_reason"] == "budget_trials"
    assert (done["best_experiment_id"], done["best_value"]) == (best_id, results[best_id])
    assert done["best_accuracy"] == results[best_id]

    completed = [e for e in await outbox(db) if e["type"] == "hpo_campaign.completed"]
    assert len(completed) == 1
    data = completed[0]["data"]
    assert (data["best_experiment_id"], data["best_value"]) == (best_id, results[best_id])
    assert (data["trials_completed"], data["trials_total"]) == (4, 4)
    assert [t for t in await event_types(db) if t.startswith("hpo_campaign.")] == [
        "hpo_campaign.started",
        "hpo_campaign.completed",
    ]

    refused = await suggest(client, alice, campaign["id"])
    assert refused.status_code == 409
    assert refused.json()["current_status"] == "completed"


async def test_a_failed_trial_counts_toward_the_budget_but_never_becomes_the_best(
    client, db, alice
) -> None:
    campaign = await new_campaign(client, alice, budget={"max_trials": 2})
    first = (await suggest(client, alice, campaign["id"])).json()
    await train(client, alice, first, fail=True)
    second = (await suggest(client, alice, campaign["id"])).json()
    value = await train(client, alice, second)
    await deliver_own_events(db)
    # a redelivery of every event changes nothing (inbox), and nothing is counted twice
    assert await deliver_own_events(db) == 0

    done = await campaign_of(client, alice, campaign["id"])
    assert (done["status"], done["trials_completed"]) == ("completed", 2)
    assert (done["best_experiment_id"], done["best_value"]) == (second["experiment"]["id"], value)
    trials = (
        await client.get(f"/api/v1/hpo-campaigns/{campaign['id']}/trials", headers=alice.headers)
    ).json()
    assert [(t["number"], t["state"]) for t in trials] == [(0, "fail"), (1, "complete")]


@pytest.mark.parametrize("method", ["grid", "bayesian"])
@pytest.mark.slow
async def test_the_study_survives_a_restart_of_the_service(settings, db, alice, method) -> None:
    """Half the campaign with one process, the rest with a new one: the study is rebuilt from
    the database, so a grid hands out each point once and numbering goes on."""
    space = {
        "optimizer": {"type": "categorical", "choices": ["adam", "sgd"]},
        "batch_size": {"type": "int", "low": 32, "high": 64, "step": 32},
        "learning_rate": {"type": "float", "low": 0.001, "high": 0.003, "step": 0.001},
    }
    if method == "bayesian":
        space["learning_rate"] = {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}
    seen: list[tuple[Any, ...]] = []
    async with running_app(create_app(settings)) as client:
        campaign = await new_campaign(
            client, alice, method=method, search_space=space, budget={"max_trials": 50}
        )
        # grid: the budget is capped at the grid's 12 points
        expected_total = 12 if method == "grid" else 50
        assert campaign["trials_total"] == expected_total
        for _ in range(3):
            suggestion = (await suggest(client, alice, campaign["id"])).json()
            seen.append(tuple(suggestion["params"].values()))
            await train(client, alice, suggestion)
        await deliver_own_events(db)

    async with running_app(create_app(settings)) as client:
        numbers = []
        for _ in range(9):
            suggestion = (await suggest(client, alice, campaign["id"])).json()
            numbers.append(suggestion["trial_number"])
            seen.append(tuple(suggestion["params"].values()))
            await train(client, alice, suggestion)
            await deliver_own_events(db)
        assert numbers == list(range(3, 12))
        assert len(set(seen)) == 12  # no suggestion repeated (a grid covers all 12 points)
        done = await campaign_of(client, alice, campaign["id"])
        if method == "grid":
            assert (done["status"], done["trials_completed"]) == ("completed", 12)
            assert (await suggest(client, alice, campaign["id"])).status_code == 409
        else:
            assert (done["status"], done["trials_completed"]) == ("running", 12)


async def test_concurrent_suggestions_never_exceed_the_budget(client, db, alice) -> None:
    campaign = await new_campaign(client, alice, budget={"max_trials": 3})
    responses = await asyncio.gather(*(suggest(client, alice, campaign["id"]) for _ in range(6)))
    assert sorted(r.status_code for r in responses) == [201, 201, 201, 409, 409, 409]
    numbers = sorted(r.json()["trial_number"] for r in responses if r.status_code == 201)
    assert numbers == [0, 1, 2]
    rows = await fetch(
        db,
        "SELECT count(*) AS n FROM experiments.experiments WHERE hpo_campaign_id = $1",
        __import__("uuid").UUID(campaign["id"]),
    )
    assert rows[0]["n"] == 3


async def test_the_pruner_stops_a_trial_worse_than_the_median_and_it_counts_as_pruned(
    client, db, alice
) -> None:
    campaign = await new_campaign(
        client, alice, pruner="median", budget={"max_trials": 7, "min_epochs": 1}
    )
    for _ in range(5):
        suggestion = (await suggest(client, alice, campaign["id"])).json()
        experiment_id = suggestion["experiment"]["id"]
        runs = [{"epoch": e, "val_accuracy": 0.5 + 0.1 * e} for e in range(4)]
        await client.post(
            f"/api/v1/experiments/{experiment_id}/runs", json={"runs": runs}, headers=alice.headers
        )
        await act(client, alice, experiment_id, "complete")
    await deliver_own_events(db)

    bad = (await suggest(client, alice, campaign["id"])).json()["experiment"]["id"]
    good = (await suggest(client, alice, campaign["id"])).json()["experiment"]["id"]

    async def epoch(experiment_id: str, number: int, value: float) -> dict[str, Any]:
        await client.post(
            f"/api/v1/experiments/{experiment_id}/runs",
            json={"epoch": number, "val_accuracy": value},
            headers=alice.headers,
        )
        answer = await client.get(
            f"/api/v1/experiments/{experiment_id}/should-prune", headers=alice.headers
        )
        assert answer.status_code == 200
        result: dict[str, Any] = answer.json()
        return result

    assert (await epoch(bad, 0, 0.5))["should_prune"] is False  # warm-up epoch
    verdict = await epoch(bad, 1, 0.2)
    assert (verdict["should_prune"], verdict["step"]) == (True, 1)
    assert (await epoch(good, 0, 0.5))["should_prune"] is False
    assert (await epoch(good, 1, 0.7))["should_prune"] is False

    await act(client, alice, bad, "cancel", reason="pruned")
    await deliver_own_events(db)
    trials = (
        await client.get(f"/api/v1/hpo-campaigns/{campaign['id']}/trials", headers=alice.headers)
    ).json()
    assert trials[5]["state"] == "pruned" and trials[5]["pruned_at_step"] == 1
    assert trials[6]["state"] == "running"


async def test_an_experiment_outside_any_campaign_is_never_pruned(client, alice) -> None:
    from services.experiments.tests.experiments_helpers import new_experiment

    experiment = await new_experiment(client, alice)
    answer = await client.get(
        f"/api/v1/experiments/{experiment['id']}/should-prune", headers=alice.headers
    )
    assert answer.status_code == 200
    assert answer.json()["should_prune"] is False and answer.json()["hpo_campaign_id"] is None


async def test_a_campaign_is_private_to_its_owner_and_read_only_for_viewers(
    client, alice, bob, viewer
) -> None:
    campaign = await new_campaign(client, alice)
    path = f"/api/v1/hpo-campaigns/{campaign['id']}"
    assert (await client.get(path, headers=bob.headers)).status_code == 404
    assert (await client.post(f"{path}/suggest", headers=bob.headers)).status_code == 404
    assert (await client.get(path, headers=viewer.headers)).status_code == 200
    assert (await client.post(f"{path}/suggest", headers=viewer.headers)).status_code == 403
    listed = (await client.get("/api/v1/hpo-campaigns", headers=bob.headers)).json()
    assert listed["items"] == []


@pytest.mark.parametrize(
    ("change", "loc"),
    [
        ({"method": "grid"}, ["body", "search_space", "learning_rate"]),
        (
            {"search_space": {"x": {"type": "float", "low": 0, "high": 1, "log": True}}},
            ["body", "search_space", "x", "float"],
        ),
        ({"search_space": {"x": {"type": "categorical", "choices": []}}}, None),
        ({"budget": {"max_trials": 0}}, ["body", "budget", "max_trials"]),
        ({"method": "annealing"}, ["body", "method"]),
        (
            {
                "method": "grid",
                "search_space": {"x": {"type": "float", "low": 0, "high": 1, "step": 1e-9}},
            },
            ["body", "search_space"],
        ),
        ({"pruner": "hyperband"}, ["body", "pruner"]),
    ],
)
async def test_an_unsearchable_campaign_is_refused_with_the_field_named(
    client, db, alice, change, loc
) -> None:
    body = {
        "name": "bad",
        "method": "random",
        "search_space": SPACE,
        "budget": {"max_trials": 3},
        **change,
    }
    response = await client.post("/api/v1/hpo-campaigns", json=body, headers=alice.headers)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    if loc is not None:
        assert any(e["loc"][: len(loc)] == loc for e in response.json()["errors"]), response.json()
    assert await fetch(db, "SELECT id FROM experiments.hpo_campaigns") == []


def reference_answers(campaign_id: str, curves: list[list[float]]) -> list[list[bool]]:
    """What a plain Optuna study with the same name, pruner and history answers."""
    import optuna

    study = optuna.create_study(
        study_name=f"hpo-{campaign_id}",
        direction="maximize",
        pruner=optuna.pruners.HyperbandPruner(min_resource=1, max_resource=9, reduction_factor=3),
    )
    answers = []
    for curve in curves:
        trial = study.ask()
        said = []
        for epoch, value in enumerate(curve):
            trial.report(value, epoch)
            said.append(trial.should_prune())
            if said[-1]:
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                break
        else:
            study.tell(trial, curve[-1])
        answers.append(said)
    return answers


@pytest.mark.slow
async def test_hyperband_answers_as_optuna_does_with_the_same_history(client, db, alice) -> None:
    """The pruner's rungs live in the trials' system attributes: stored after each answer, the
    rebuilt study prunes exactly as one long-lived Optuna study would."""
    campaign = await new_campaign(
        client,
        alice,
        method="hyperband",
        budget={"max_trials": 16, "min_epochs": 1, "max_epochs": 9},
    )
    assert campaign["pruner"] == "hyperband"

    async def trial(curve: list[float]) -> list[bool]:
        suggestion = (await suggest(client, alice, campaign["id"])).json()
        assert in_space(suggestion["params"])
        experiment_id = suggestion["experiment"]["id"]
        answers = []
        for epoch, value in enumerate(curve):
            await client.post(
                f"/api/v1/experiments/{experiment_id}/runs",
                json={"epoch": epoch, "val_accuracy": value},
                headers=alice.headers,
            )
            answer = await client.get(
                f"/api/v1/experiments/{experiment_id}/should-prune", headers=alice.headers
            )
            answers.append(answer.json()["should_prune"])
            if answers[-1]:
                await act(client, alice, experiment_id, "cancel", reason="pruned")
                break
        else:
            await act(client, alice, experiment_id, "complete")
        await deliver_own_events(db)
        return answers

    curves = [[0.6 + 0.04 * e + 0.003 * (n % 5) for e in range(10)] for n in range(10)]
    curves += [[0.1 + 0.01 * e for e in range(10)] for _ in range(6)]
    answers = [await trial(curve) for curve in curves]
    assert answers == reference_answers(campaign["id"], curves)
    assert any(a[-1] for a in answers[10:]), "some trailing trial was pruned"
    trials = (
        await client.get(f"/api/v1/hpo-campaigns/{campaign['id']}/trials", headers=alice.headers)
    ).json()
    assert [t["state"] == "pruned" for t in trials] == [a[-1] for a in answers]
    done = await campaign_of(client, alice, campaign["id"])
    assert (done["status"], done["trials_completed"]) == ("completed", 16)


async def test_a_spent_duration_budget_stops_suggestions_and_completes_the_campaign(
    client, db, alice
) -> None:
    from runyard.experiments.campaigns.service import hpo_results
    from runyard.shared.db import create_engine, create_sessionmaker

    campaign = await new_campaign(
        client, alice, budget={"max_trials": 10, "max_duration_seconds": 3600}
    )
    first = (await suggest(client, alice, campaign["id"])).json()
    # an hour and a bit later
    await fetch(
        db,
        "UPDATE experiments.hpo_campaigns SET started_at = now() - interval '61 minutes' "
        "WHERE id = $1",
        __import__("uuid").UUID(campaign["id"]),
    )
    refused = await suggest(client, alice, campaign["id"])
    assert refused.status_code == 409 and "max_duration_seconds" in refused.json()["detail"]

    engine = create_engine(db.url, pool_size=1)
    try:
        sessionmaker = create_sessionmaker(engine, schema="experiments")
        async with sessionmaker() as session, session.begin():
            # the running trial keeps the campaign open
            assert await hpo_results.complete_expired(session) == 0
        await train(client, alice, first)
        await deliver_own_events(db)
    finally:
        await engine.dispose()
    done = await campaign_of(client, alice, campaign["id"])
    assert (done["status"], done["completion_reason"]) == ("completed", "budget_duration")
    assert (done["trials_completed"], done["trials_total"]) == (1, 10)
    event = next(e for e in await outbox(db) if e["type"] == "hpo_campaign.completed")
    assert event["data"]["reason"] == "budget_duration"


@pytest.mark.slow
async def test_a_campaign_that_ran_out_of_time_idle_is_completed_by_the_sweep(
    client, db, alice
) -> None:
    from runyard.experiments.campaigns.service import hpo_results
    from runyard.shared.db import create_engine, create_sessionmaker

    campaign = await new_campaign(
        client, alice, budget={"max_trials": 10, "max_duration_seconds": 60}
    )
    await train(client, alice, (await suggest(client, alice, campaign["id"])).json())
    await deliver_own_events(db)
    assert (await campaign_of(client, alice, campaign["id"]))["status"] == "running"
    await fetch(
        db,
        "UPDATE experiments.hpo_campaigns SET started_at = now() - interval '2 minutes' "
        "WHERE id = $1",
        __import__("uuid").UUID(campaign["id"]),
    )
    engine = create_engine(db.url, pool_size=1)
    try:
        sessionmaker = create_sessionmaker(engine, schema="experiments")
        async with sessionmaker() as session, session.begin():
            assert await hpo_results.complete_expired(session) == 1
    finally:
        await engine.dispose()
    assert (await campaign_of(client, alice, campaign["id"]))["status"] == "completed"


async def test_a_cancelled_campaign_suggests_nothing_but_still_records_running_trials(
    client, db, alice
) -> None:
    campaign = await new_campaign(client, alice, budget={"max_trials": 5})
    running = (await suggest(client, alice, campaign["id"])).json()
    response = await client.post(
        f"/api/v1/hpo-campaigns/{campaign['id']}/cancel", headers=alice.headers
    )
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert (await suggest(client, alice, campaign["id"])).status_code == 409
    value = await train(client, alice, running)
    await deliver_own_events(db)
    done = await campaign_of(client, alice, campaign["id"])
    assert (done["status"], done["trials_completed"], done["best_value"]) == (
        "cancelled",
        1,
        value,
    )
    assert "hpo_campaign.completed" not in await event_types(db)
