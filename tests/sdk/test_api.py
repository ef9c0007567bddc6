"""The SDK in this process against the stack: (d) a refused key fails ``init`` at once; metrics
the server would refuse are reported and dropped alone; tags, notes, summary; ``resume``; an HPO
campaign driven by ``runyard.hpo`` with ``should_prune``; exceptions and Ctrl-C end runs."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

import runyard

from .conftest import assert_exactly, epochs_on_server, values_of, wait_until

pytestmark = pytest.mark.sdk


def test_bad_api_key_fails_init_at_once(sdk_env: dict[str, str]) -> None:
    with pytest.raises(runyard.AuthError) as refused:
        runyard.init(name="never", api_key="ry_not-a-key")
    assert refused.value.status == 401
    assert "RUNYARD_API_KEY" in str(refused.value)
    assert not (Path(sdk_env["RUNYARD_DIR"]) / "runs").exists()  # nothing kept to sync later


def test_a_run_with_tags_notes_summary_and_bad_metrics(
    sdk_env: dict[str, str], server: httpx.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    with runyard.init(
        name="pump cnn",
        model_type="cnn1d",
        hyperparameters={"lr": 1e-3},
        dataset="pumps-v2",
        tags=["baseline"],
    ) as run:
        run.tag("sdk")
        run.note("first try")
        for epoch in range(1, 6):
            run.log({"train_loss": 1 / epoch, "bad`name": 1.0, "val_f1": float("nan")}, epoch=epoch)
            run.log({"val_accuracy": 0.5 + epoch / 100}, epoch=epoch)  # adds to the same epoch
        run.summary(final_metrics={"val_accuracy": 0.94})
    experiment_id = run.id
    assert experiment_id is not None
    err = capsys.readouterr().err
    assert err.count("metric 'bad`name' not logged") == 1
    assert err.count("metric val_f1 not logged: its value nan is not finite") == 1

    found = server.get(f"/experiments/{experiment_id}").json()
    assert found["status"] == "completed"
    assert sorted(found["tags"]) == ["baseline", "sdk"]
    assert found["notes"] == "first try"
    assert found["metrics"]["val_accuracy"] == 0.94
    dataset = server.get(f"/datasets/{found['dataset_id']}").json()
    assert dataset["name"] == "pumps-v2"
    runs = epochs_on_server(server, experiment_id)
    assert [values_of(r) for r in runs] == [
        {"train_loss": 1 / e, "val_accuracy": 0.5 + e / 100} for e in range(1, 6)
    ]

    # the same name again gets a number; the dataset is found, not created twice
    with runyard.init(name="pump cnn", dataset="pumps-v2") as second:
        second.log({"train_loss": 1.0})
    again = server.get(f"/experiments/{second.id}").json()
    assert again["name"] == "pump cnn (2)"
    assert again["dataset_id"] == found["dataset_id"]


def test_exception_fails_and_ctrl_c_cancels(sdk_env: dict[str, str], server: httpx.Client) -> None:
    with pytest.raises(ValueError), runyard.init(name="diverges") as failing:
        failing.log({"train_loss": 1.0})
        raise ValueError("loss is nan")
    found = server.get(f"/experiments/{failing.id}").json()
    assert found["status"] == "failed"
    assert found["error_message"].startswith("ValueError: loss is nan")
    assert found["total_epochs"] == 1

    with pytest.raises(KeyboardInterrupt), runyard.init(name="interrupted") as stopped:
        raise KeyboardInterrupt
    found = server.get(f"/experiments/{stopped.id}").json()
    assert (found["status"], found["error_message"]) == ("cancelled", "interrupted (Ctrl-C)")


def test_resume_a_paused_experiment(sdk_env: dict[str, str], server: httpx.Client) -> None:
    run = runyard.init(name="paused one")
    for epoch in range(1, 4):
        run.log({"val_loss": 1.0 / epoch})
    assert run.flush(30)
    assert server.post(f"/experiments/{run.id}/pause").status_code == 200
    assert run.finish()  # a paused experiment completes too
    assert server.get(f"/experiments/{run.id}").json()["status"] == "completed"
    with pytest.raises(runyard.RunyardError, match="is completed"):
        runyard.resume(str(run.id))

    # created and paused elsewhere (here: with the tests' own HTTP client)
    other = server.post("/experiments", json={"name": "paused two"}).json()
    assert server.post(f"/experiments/{other['id']}/runs", json={"epoch": 1}).status_code == 201
    assert server.post(f"/experiments/{other['id']}/pause").status_code == 200
    with runyard.resume(other["id"]) as resumed:
        resumed.log({"val_loss": 1.5})  # epoch 2: after the server's total_epochs
    assert [r["epoch"] for r in epochs_on_server(server, other["id"])] == [1, 2]
    assert server.get(f"/experiments/{other['id']}").json()["status"] == "completed"


def test_hpo_loop_with_pruning(sdk_env: dict[str, str], server: httpx.Client) -> None:
    created = server.post(
        "/hpo-campaigns",
        json={
            "name": "sdk hpo",
            "method": "random",
            "pruner": "median",
            "metric": "val_accuracy",
            "direction": "maximize",
            "search_space": {"lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}},
            "budget": {"max_trials": 7, "max_epochs": 4},
            "seed": 3,
        },
    )
    assert created.status_code == 201, created.text
    campaign_id = created.json()["id"]
    seen = []
    for trial in runyard.hpo(campaign_id):
        assert set(trial.params) == {"lr"}
        if trial.number == 5:  # the campaign learns results from events: wait for the first 5
            wait_until(
                lambda: server.get(f"/hpo-campaigns/{campaign_id}").json()["trials_completed"] == 5,
                "5 trials told",
            )
        for epoch in range(1, 5):
            # the later the trial, the worse it does: after 5 trials (the median pruner's
            # start-up) the later ones fall below the median and are stopped
            trial.report({"val_accuracy": 0.9 - 0.1 * trial.number + 0.01 * epoch}, epoch=epoch)
            if trial.should_prune():
                break
        seen.append((trial.number, trial.id, trial.pruned_at))
    assert [n for n, _, _ in seen] == list(range(7))
    assert [n for n, _, at in seen if at is not None] == [5, 6]
    for number, experiment_id, pruned_at in seen:
        found = server.get(f"/experiments/{experiment_id}").json()
        assert found["status"] == ("cancelled" if pruned_at else "completed"), number
        assert found["hyperparameters"]["lr"] > 0
    trials = server.get(f"/hpo-campaigns/{campaign_id}/trials").json()
    assert sorted(t["number"] for t in trials if t["pruned_at_step"] is not None) == [5, 6]


def test_every_epoch_once_for_a_longer_run(sdk_env: dict[str, str], server: httpx.Client) -> None:
    logged = []
    with runyard.init(name="2500 epochs") as run:
        for epoch in range(2500):  # more than one batch (1,000 epochs)
            values = {"train_loss": 1 / (epoch + 1), "lr_scale": epoch % 7}
            run.log(values, epoch=epoch)
            logged.append({"epoch": epoch, "values": {k: float(v) for k, v in values.items()}})
    assert_exactly(server, str(run.id), logged)
