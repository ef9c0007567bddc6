"""One run through ``MlflowClient``: create/get/update/delete/restore, params, metrics over
steps and their history, tags, log_batch and its limits, dataset inputs, and the errors."""

from __future__ import annotations

import time
import uuid

import numpy as np
import pandas as pd
from _common import arguments, emit, error_of, run_dict
from mlflow import MlflowClient
from mlflow.data import from_numpy, from_pandas
from mlflow.entities import DatasetInput, InputTag, Metric, Param, RunTag

prefix = arguments()["prefix"]
client = MlflowClient()
out: dict[str, object] = {}

experiment_id = client.create_experiment(f"{prefix}-runs")
start = int(time.time() * 1000) - 60_000
created = client.create_run(
    experiment_id,
    start_time=start,
    tags={"team": "a", "mlflow.note.content": "first"},
    run_name="first-run",
)
run_id = created.info.run_id
out["experiment_id"] = experiment_id
out["created"] = run_dict(created)
out["got"] = run_dict(client.get_run(run_id))

# params are strings, write-once: the same value again is fine, another value is refused
client.log_param(run_id, "lr", 0.01)
client.log_param(run_id, "layers", 3)
client.log_param(run_id, "lr", 0.01)
out["param_changed"] = error_of(client.log_param, run_id, "lr", 0.02)

# a metric over steps, logged out of order; the history comes back in MLflow's order
# (timestamp, step, value), which here is the step order
for step in (3, 0, 4, 1, 2):
    client.log_metric(run_id, "loss", 1.0 / (step + 1), timestamp=start + step * 1000, step=step)
client.log_metric(run_id, "lr_now", 0.5, timestamp=start, step=0)
out["loss_history"] = [
    {"step": m.step, "value": m.value, "timestamp": m.timestamp}
    for m in client.get_metric_history(run_id, "loss")
]
out["no_history"] = [m.value for m in client.get_metric_history(run_id, "never-logged")]

client.set_tag(run_id, "stage", "dev")
client.set_tag(run_id, "stage", "prod")  # tags are overwritten
client.delete_tag(run_id, "team")
out["delete_missing_tag"] = error_of(client.delete_tag, run_id, "team")

now = int(time.time() * 1000)
client.log_batch(
    run_id,
    metrics=[Metric("acc", 0.5 + i / 10, now + i, i) for i in range(3)],
    params=[Param("optimizer", "adam")],
    tags=[RunTag("batch", "yes")],
)
# the client splits a big batch itself (1,000 metrics per request): 1,001 points all arrive
client.log_batch(run_id, metrics=[Metric("many", float(i), now, i) for i in range(1001)])
out["many_count"] = len(client.get_metric_history(run_id, "many"))
# one request over the limit, through the client's own REST store: refused, nothing written
store = client._tracking_client.store
out["batch_over_limit"] = error_of(
    store.log_batch, run_id, [Metric("too_many", float(i), now, i) for i in range(1001)], [], []
)
out["too_many_history"] = len(client.get_metric_history(run_id, "too_many"))
out["params_over_limit"] = error_of(
    store.log_batch, run_id, [], [Param(f"p{i}", "x") for i in range(101)], []
)
# a batch with a param changing its value is refused as a whole
out["batch_param_changed"] = error_of(
    client.log_batch,
    run_id,
    metrics=[Metric("refused_with_batch", 1.0, now, 0)],
    params=[Param("optimizer", "sgd")],
)
out["refused_with_batch_history"] = len(client.get_metric_history(run_id, "refused_with_batch"))

# dataset inputs: from pandas and from numpy, the same dataset twice is kept once
frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0, 1, 0]})
tabular = from_pandas(frame, source="https://example.test/pumps.csv", name="pumps", targets="y")
arrays = from_numpy(np.arange(12, dtype=np.float64).reshape(4, 3), name="features")
client.log_inputs(
    run_id,
    datasets=[
        DatasetInput(tabular._to_mlflow_entity(), [InputTag("mlflow.data.context", "training")]),
        DatasetInput(arrays._to_mlflow_entity(), [InputTag("mlflow.data.context", "eval")]),
    ],
)
client.log_inputs(
    run_id,
    datasets=[
        DatasetInput(tabular._to_mlflow_entity(), [InputTag("mlflow.data.context", "training")])
    ],
)
out["digests"] = {"pumps": tabular.digest, "features": arrays.digest}
out["by_dataset"] = {
    f: [r.info.run_id for r in client.search_runs([experiment_id], filter_string=f)]
    for f in (
        "datasets.name = 'pumps'",
        "dataset.context = 'eval'",
        f"datasets.digest = '{arrays.digest}'",
        "datasets.name = 'nothing-called-this'",
    )
}

out["before_end"] = run_dict(client.get_run(run_id))
client.update_run(run_id, status="FINISHED", name="first-run-renamed")
out["finished"] = run_dict(client.get_run(run_id))

# a second run: killed, deleted, restored
second = client.create_run(experiment_id, run_name="first-run")  # the same name is allowed
second_id = second.info.run_id
out["second_created"] = run_dict(second)
client.set_terminated(second_id, status="KILLED")
client.delete_run(second_id)
out["second_deleted"] = run_dict(client.get_run(second_id))
out["log_to_deleted"] = error_of(client.log_metric, second_id, "loss", 1.0)
client.restore_run(second_id)
out["second_restored"] = run_dict(client.get_run(second_id))
out["second_id"] = second_id

# errors
out["missing_run"] = error_of(client.get_run, uuid.uuid4().hex)
out["missing_run_log"] = error_of(client.log_metric, uuid.uuid4().hex, "loss", 1.0)
out["missing_experiment_run"] = error_of(client.create_run, str(uuid.uuid4()))
emit(out)
