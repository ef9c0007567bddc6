"""The real-client proof: training code using the stock client logs (1) a hand-written run with
params, metrics over steps, tags and an artifact, and (2) a scikit-learn training run under
``mlflow.autolog()``, whose logged model is loaded back and predicts as the fitted one did."""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow
import numpy as np
from _common import arguments, emit, run_dict
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

args = arguments()
out: dict[str, object] = {}
mlflow.set_experiment(args["experiment"])

report = Path(tempfile.mkdtemp()) / "report.md"
report.write_text("# pump classifier\nval_accuracy 0.9\n")
with mlflow.start_run(run_name=args["manual_run"]) as run:
    mlflow.log_params({"lr": 0.001, "batch_size": 64})
    for step in range(1, 6):
        mlflow.log_metrics(
            {"train_loss": 1.0 / step, "val_loss": 1.1 / step, "val_accuracy": 0.5 + step / 20},
            step=step,
        )
    mlflow.set_tags({"model": "cnn1d", "dataset": "pumps"})
    mlflow.log_artifact(str(report), artifact_path="reports")
out["manual"] = run_dict(mlflow.get_run(run.info.run_id))

mlflow.autolog(log_input_examples=False, silent=True)
features, labels = load_iris(return_X_y=True)
with mlflow.start_run(run_name=args["autolog_run"]) as run:
    model = LogisticRegression(max_iter=300).fit(features, labels)
autolog_id = run.info.run_id
out["autolog"] = run_dict(mlflow.get_run(autolog_id))
out["autolog_artifacts"] = sorted(f.path for f in mlflow.MlflowClient().list_artifacts(autolog_id))
logged = mlflow.last_logged_model()
out["logged_model"] = (
    None
    if logged is None
    else {
        "model_id": logged.model_id,
        "source_run_id": logged.source_run_id,
        "status": str(logged.status),
        "artifact_location": logged.artifact_location,
    }
)
if logged is not None:
    loaded = mlflow.sklearn.load_model(f"models:/{logged.model_id}")
    out["same_predictions"] = bool(
        np.array_equal(loaded.predict(features), model.predict(features))
    )
emit(out)
