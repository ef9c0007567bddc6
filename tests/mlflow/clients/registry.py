"""The Model Registry through the stock client: ``mlflow.register_model`` from a run's files
(``runs:/<id>/model``) and from MLflow 3's logged model (``log_model(...,
registered_model_name=)``), versions numbered per model, aliases set, moved, read and deleted,
``search_registered_models`` / ``search_model_versions``, and the champion loaded back by its
alias (``models:/<name>@champion``) predicting as the fitted model did."""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow
import numpy as np
from _common import arguments, emit, error_of
from mlflow import MlflowClient
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

prefix = arguments()["prefix"]
name = f"{prefix}-pump-cnn"
client = MlflowClient()
out: dict[str, object] = {}


def version_dict(version) -> dict[str, object]:
    return {
        "version": version.version,
        "status": version.status,
        "run_id": version.run_id,
        "source": version.source,
        "aliases": list(version.aliases),
        "current_stage": version.current_stage,
    }


files = Path(tempfile.mkdtemp())
(files / "MLmodel").write_text("flavors: {}\n")
(files / "weights.bin").write_bytes(b"\x00\x01" * 512)
with mlflow.start_run(run_name=f"{prefix}-files") as run:
    mlflow.log_metric("val_accuracy", 0.962)
    mlflow.log_artifacts(str(files), artifact_path="model")
files_run = run.info.run_id
out["files_run"] = files_run

# twice: the second call finds the model and adds version 2
first = mlflow.register_model(f"runs:/{files_run}/model", name)
second = mlflow.register_model(f"runs:/{files_run}/model", name)
out["registered"] = [version_dict(first), version_dict(second)]

features, labels = load_iris(return_X_y=True)
fitted = LogisticRegression(max_iter=300).fit(features, labels)
with mlflow.start_run(run_name=f"{prefix}-sklearn") as run:
    info = mlflow.sklearn.log_model(fitted, name="clf", registered_model_name=name)
out["sklearn_run"] = run.info.run_id
out["logged_model_id"] = info.model_id
third = client.get_model_version(name, "3")
out["third"] = version_dict(third)

client.set_registered_model_alias(name, "champion", "1")
client.set_registered_model_alias(name, "challenger", "3")
client.set_registered_model_alias(name, "champion", "3")  # moved: one version holds it
out["champion"] = version_dict(client.get_model_version_by_alias(name, "champion"))
model = client.get_registered_model(name)
out["model_aliases"] = dict(model.aliases)
out["latest"] = [v.version for v in model.latest_versions]

loaded = mlflow.sklearn.load_model(f"models:/{name}@champion")
out["same_predictions"] = bool(np.array_equal(loaded.predict(features), fitted.predict(features)))

client.delete_registered_model_alias(name, "challenger")
out["challenger_gone"] = error_of(client.get_model_version_by_alias, name, "challenger")
out["reserved_alias"] = error_of(client.set_registered_model_alias, name, "latest", "1")
out["delete_champion"] = error_of(client.delete_model_version, name, "3")
out["duplicate"] = error_of(client.create_registered_model, name)
out["missing"] = error_of(client.get_registered_model, f"{prefix}-nope")

client.create_registered_model(f"{prefix}-other", tags={"team": "ops"})
out["search_prefix"] = sorted(
    m.name for m in client.search_registered_models(filter_string=f"name LIKE '{prefix}%'")
)
out["search_tag"] = [
    m.name
    for m in client.search_registered_models(
        filter_string=f"name LIKE '{prefix}%' AND tags.team = 'ops'"
    )
]
out["versions_of_files_run"] = sorted(
    v.version for v in client.search_model_versions(f"run_id = '{files_run}'")
)
out["versions_by_name"] = [
    v.version
    for v in client.search_model_versions(f"name = '{name}'", order_by=["version_number ASC"])
]
emit(out)
