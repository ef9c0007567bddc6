"""An experiment and a run looked at by this client, read-only unless ``try_writes``: what it
finds, or the errors it meets."""

from __future__ import annotations

from typing import Any

from _common import arguments, emit, error_of, experiment_dict, run_dict
from mlflow import MlflowClient
from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException

args = arguments()
client = MlflowClient()


def attempt(call: Any) -> Any:
    try:
        return call()
    except MlflowException as exc:
        return {"error_code": str(exc.error_code), "message": str(exc)[:1000]}


experiment_id, run_id, name = args["experiment_id"], args["run_id"], args["name"]
out: dict[str, Any] = {
    "by_id": attempt(lambda: experiment_dict(client.get_experiment(experiment_id))),
    "by_name": attempt(lambda: experiment_dict(client.get_experiment_by_name(name))),
    "search": [
        e.experiment_id
        for e in client.search_experiments(ViewType.ALL, filter_string=f"name = '{name}'")
    ],
    "runs": attempt(lambda: [r.info.run_id for r in client.search_runs([experiment_id])]),
    "run": attempt(lambda: run_dict(client.get_run(run_id))),
    "history": attempt(
        lambda: [[m.step, m.value] for m in client.get_metric_history(run_id, "train_loss")]
    ),
}
if args.get("try_writes"):
    out["log"] = error_of(client.log_metric, run_id, "loss", 1.0)
    out["tag"] = error_of(client.set_experiment_tag, experiment_id, "x", "y")
    out["delete_run"] = error_of(client.delete_run, run_id)
    out["delete"] = error_of(client.delete_experiment, experiment_id)
emit(out)
