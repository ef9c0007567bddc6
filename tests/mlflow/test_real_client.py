"""The real-client proof: unmodified training code using the stock MLflow client (a
hand-written run, and scikit-learn under ``mlflow.autolog()`` with its logged model) logs to
Runyard. The runs show in Runyard's API with their curves and artifacts, and each completion
emails the owner and fires a signed webhook, as Runyard's own runs do."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import pytest

from runyard.devstack import Stack

from .conftest import MlflowScripts
from .helpers import (
    Account,
    Receiver,
    dashed,
    mails_to,
    register_webhook,
    signed_deliveries,
    unique,
    wait_until,
)

pytestmark = pytest.mark.mlflow


def completion_mails(stack: Stack, account: Account, name: str) -> list[Any]:
    assert stack.mail_dir is not None
    return [
        m
        for m in mails_to(stack.mail_dir, account.email)
        if name in str(m["Subject"]) and "completed" in str(m["Subject"]).lower()
    ]


def signed_events(receiver: Receiver, secret: str) -> dict[str, dict[str, Any]]:
    """Every ``experiment.completed`` delivery, signature checked: subject -> CloudEvent."""
    return {e["subject"]: e for e in signed_deliveries(receiver, secret, "experiment.completed")}


def test_a_run_the_client_finishes_emails_the_owner_and_fires_a_signed_webhook(
    stack: Stack,
    mlflow: MlflowScripts,
    account: Account,
    runyard: httpx.Client,
    receiver: Receiver,
) -> None:
    secret = register_webhook(runyard, receiver, ["experiment.completed"])
    name = unique("finished")
    attempts = {"run": {"env": account.with_api_key, "experiment": name}}
    seen = mlflow.run("auth", {}, attempts=attempts)["run"]
    assert seen["status"] == "FINISHED", seen
    wait_until(lambda: completion_mails(stack, account, name), f"the email about {name}")
    events = wait_until(lambda: signed_events(receiver, secret), "the experiment.completed webhook")
    event = events[dashed(seen["run_id"])]
    assert event["type"] == "experiment.completed"
    assert event["data"]["total_epochs"] == 1


def test_training_code_logs_to_runyard_and_the_owner_hears_about_it(
    stack: Stack,
    mlflow: MlflowScripts,
    account: Account,
    runyard: httpx.Client,
    receiver: Receiver,
) -> None:
    secret = register_webhook(runyard, receiver, ["experiment.completed"])
    manual_name, autolog_name = unique("pump-cnn"), unique("iris-logreg")
    seen = mlflow.run(
        "proof",
        account.with_api_key,
        experiment=unique("proof"),
        manual_run=manual_name,
        autolog_run=autolog_name,
    )

    # what the client itself reads back
    manual, autolog = seen["manual"], seen["autolog"]
    assert manual["status"] == autolog["status"] == "FINISHED"
    assert manual["params"] == {"lr": "0.001", "batch_size": "64"}
    assert manual["metrics"] == {"train_loss": 0.2, "val_loss": 1.1 / 5, "val_accuracy": 0.75}
    assert {"C": "1.0", "max_iter": "300", "solver": "lbfgs"}.items() <= autolog["params"].items()
    assert autolog["metrics"]["training_accuracy_score"] > 0.9
    assert autolog["tags"]["estimator_name"] == "LogisticRegression"
    assert "training_confusion_matrix.png" in seen["autolog_artifacts"]
    assert [d["tags"]["mlflow.data.context"] for d in autolog["datasets"]] == ["train"]
    model = seen["logged_model"]
    assert model is not None, "autolog logged no model"
    assert model["source_run_id"] == autolog["run_id"]
    assert model["status"] == "READY"
    assert seen["same_predictions"] is True

    # Runyard's API: completed experiments of the project, with their curves and artifacts
    manual_id, autolog_id = dashed(manual["run_id"]), dashed(autolog["run_id"])
    for experiment_id, name in ((manual_id, manual_name), (autolog_id, autolog_name)):
        found = runyard.get(f"/experiments/{experiment_id}")
        assert found.status_code == 200, found.text
        assert (found.json()["name"], found.json()["status"]) == (name, "completed")
        assert found.json()["project_id"] == manual["experiment_id"]
    epochs = runyard.get(f"/experiments/{manual_id}/runs", params={"limit": 100}).json()["items"]
    assert [(e["epoch"], e["train_loss"], e["val_loss"], e["val_accuracy"]) for e in epochs] == [
        (s, 1.0 / s, 1.1 / s, 0.5 + s / 20) for s in range(1, 6)
    ]
    history = runyard.get(
        f"/experiments/{manual_id}/history", params=[("metric", "val_loss"), ("buckets", "100")]
    )
    assert history.status_code == 200, history.text
    assert history.json()["points"] == 5
    assert history.json()["series"]["val_loss"]["last"] == [1.1 / s for s in range(1, 6)]
    found_autolog = runyard.get(f"/experiments/{autolog_id}").json()
    assert found_autolog["hyperparameters"]["C"] == "1.0"
    autolog_epochs = runyard.get(f"/experiments/{autolog_id}/runs").json()["items"]
    assert autolog_epochs and "training_accuracy_score" in autolog_epochs[0]["metrics"]

    artifacts = runyard.get(f"/experiments/{manual_id}/artifacts").json()["items"]
    (report,) = [a for a in artifacts if a["path"].endswith("reports/report.md")]
    content = b"# pump classifier\nval_accuracy 0.9\n"
    assert report["sha256"] == hashlib.sha256(content).hexdigest()
    autolog_files = [
        a["path"] for a in runyard.get(f"/experiments/{autolog_id}/artifacts").json()["items"]
    ]
    assert any(p.endswith("training_confusion_matrix.png") for p in autolog_files)

    # the owner's emails, one per completed run
    wait_until(lambda: completion_mails(stack, account, manual_name), "the manual run's email")
    wait_until(lambda: completion_mails(stack, account, autolog_name), "the autolog run's email")

    # the webhook: one signed Standard Webhooks POST of experiment.completed per run
    def both_runs() -> dict[str, dict[str, Any]]:
        events = signed_events(receiver, secret)
        return events if len(events) >= 2 else {}

    events = wait_until(both_runs, "two experiment.completed webhooks")
    assert sorted(events) == sorted([manual_id, autolog_id])
    assert {e["type"] for e in events.values()} == {"experiment.completed"}
    assert events[manual_id]["data"]["total_epochs"] == 5
