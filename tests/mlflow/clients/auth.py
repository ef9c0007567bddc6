"""For each attempt, with the credentials it names in the environment (MLFLOW_TRACKING_TOKEN,
or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD; the client reads them at every
request): create an experiment and a run in it, log a metric and finish; or report the error
the first call met. Several attempts share one process: importing MLflow takes seconds."""

from __future__ import annotations

import os

from _common import arguments, emit
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

CREDENTIALS = ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")

results: dict[str, object] = {}
for label, attempt in arguments()["attempts"].items():
    for key in CREDENTIALS:
        os.environ.pop(key, None)
    os.environ.update(attempt["env"])
    name = attempt["experiment"]
    client = MlflowClient()
    try:
        experiment_id = client.create_experiment(name)
        run_id = client.create_run(experiment_id, run_name=name).info.run_id
        client.log_metric(run_id, "loss", 0.25, step=1)
        client.set_terminated(run_id)
        run = client.get_run(run_id)
    except MlflowException as exc:
        results[label] = {"error_code": str(exc.error_code), "message": str(exc)[:1000]}
    else:
        results[label] = {
            "experiment_id": experiment_id,
            "run_id": run_id,
            "status": run.info.status,
            "metrics": dict(run.data.metrics),
        }
emit(results)
