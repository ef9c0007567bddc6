"""An MLflow 3 logged model made outside a run: ``mlflow.sklearn.log_model`` with no active run
(the model has no source run), its files listed, downloaded and loaded back by
``models:/<model_id>``, predicting as the fitted model did; then registered, by
``mlflow.register_model("models:/<model_id>")`` and by ``log_model(...,
registered_model_name=...)`` outside a run, and loaded back by ``models:/<name>/<version>``; and an
external model (``mlflow.create_external_model``) registered."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import mlflow
import numpy as np
from _common import arguments, emit
from mlflow import MlflowClient
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

args = arguments()
out: dict[str, object] = {}
experiment_id = mlflow.set_experiment(args["experiment"]).experiment_id
out["experiment_id"] = experiment_id

features, labels = load_iris(return_X_y=True)
fitted = LogisticRegression(max_iter=300).fit(features, labels)
assert mlflow.active_run() is None
info = mlflow.sklearn.log_model(fitted, name="standalone")
out["active_run_after"] = mlflow.active_run() is not None
model = MlflowClient().get_logged_model(info.model_id)
out["model"] = {
    "model_id": model.model_id,
    "experiment_id": model.experiment_id,
    "source_run_id": model.source_run_id,
    "status": str(model.status),
    "artifact_location": model.artifact_location,
}
out["files"] = sorted(
    [f.path, f.is_dir] for f in MlflowClient().list_logged_model_artifacts(info.model_id)
)
downloaded = Path(mlflow.artifacts.download_artifacts(info.model_uri, dst_path=tempfile.mkdtemp()))
out["downloaded"] = {
    str(p.relative_to(downloaded)): hashlib.sha256(p.read_bytes()).hexdigest()
    for p in sorted(downloaded.rglob("*"))
    if p.is_file()
}
loaded = mlflow.sklearn.load_model(f"models:/{info.model_id}")
out["same_predictions"] = bool(np.array_equal(loaded.predict(features), fitted.predict(features)))

name = args["registered_model"]
first = mlflow.register_model(info.model_uri, name)
second = mlflow.sklearn.log_model(fitted, name="again", registered_model_name=name)
out["registered"] = [
    {"version": v.version, "status": v.status, "run_id": v.run_id, "source": v.source}
    for v in (first, MlflowClient().get_model_version(name, "2"))
]
out["second_model_id"] = second.model_id
reloaded = mlflow.sklearn.load_model(f"models:/{name}/2")
out["same_predictions_by_version"] = bool(
    np.array_equal(reloaded.predict(features), fitted.predict(features))
)

# an external model (its files are kept elsewhere): READY at once, registered as it is
external = mlflow.create_external_model(name="agent")
third = mlflow.register_model(f"models:/{external.model_id}", name)
out["external"] = {"version": third.version, "status": third.status, "model_id": external.model_id}
emit(out)
