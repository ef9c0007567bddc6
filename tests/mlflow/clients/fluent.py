"""The fluent API as training code uses it: set_experiment, start_run, log_params, log_metrics
over steps, set_tags, log_artifact(s), end_run; then the artifacts listed and downloaded again,
byte for byte."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import mlflow
from _common import arguments, emit, run_dict

args = arguments()
out: dict[str, object] = {}

experiment = mlflow.set_experiment(args["experiment"])
out["experiment_id"] = experiment.experiment_id
out["set_again"] = mlflow.set_experiment(args["experiment"]).experiment_id

work = Path(tempfile.mkdtemp())
files = {
    "notes.txt": b"first fluent run\n",
    "plots/curve.bin": os.urandom(300_000),
    "plots/deeper/empty.dat": b"",
    "plots/deeper/names with spaces.json": b'{"ok": true}',
    # over the gateway's 10 MiB body limit for other requests: uploads stream
    "weights/big.bin": os.urandom(11 * 2**20),
}
for relative, content in files.items():
    path = work / "upload" / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)

with mlflow.start_run(run_name=args["run_name"]) as run:
    run_id = run.info.run_id
    mlflow.log_params({"lr": 0.01, "epochs": 3, "optimizer": "adam"})
    for step in range(3):
        mlflow.log_metrics(
            {"train_loss": 1.0 / (step + 1), "val_accuracy": 0.6 + step / 10}, step=step
        )
    mlflow.log_metric("val_loss", 0.5, step=2)  # into the step already logged
    mlflow.set_tags({"team": "pumps", "purpose": "compat"})
    mlflow.log_artifact(str(work / "upload" / "notes.txt"))
    mlflow.log_artifacts(str(work / "upload" / "plots"), artifact_path="plots")
    mlflow.log_artifact(str(work / "upload" / "weights" / "big.bin"), artifact_path="weights")
    out["active"] = mlflow.active_run().info.run_id
    # nested runs, as hyperparameter searches make them
    children = []
    for lr in (0.1, 0.01):
        with mlflow.start_run(run_name=f"trial-lr{lr}", nested=True) as child:
            mlflow.log_param("lr", lr)
            mlflow.log_metric("val_loss", lr * 2)
            children.append(child.info.run_id)
    out["children"] = children
    out["after_children"] = mlflow.active_run().info.run_id

out["after"] = mlflow.active_run() is None
out["child_parent_tags"] = [mlflow.get_run(c).data.tags.get("mlflow.parentRunId") for c in children]
out["children_by_parent"] = sorted(
    r.info.run_id
    for r in mlflow.MlflowClient().search_runs(
        [experiment.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run_id}'"
    )
)
# the pandas frame training notebooks use
frame = mlflow.search_runs(experiment_names=[args["experiment"]], order_by=["metrics.val_loss ASC"])
out["frame"] = {
    "run_ids": list(frame["run_id"]),
    "status": list(frame["status"]),
    "params.lr": list(frame["params.lr"]),
    "metrics.val_loss": list(frame["metrics.val_loss"]),
    "tags.team": [None if isinstance(v, float) else v for v in frame["tags.team"]],
}
out["run"] = run_dict(mlflow.get_run(run_id))
client = mlflow.MlflowClient()
out["top"] = sorted([f.path, f.is_dir, f.file_size] for f in client.list_artifacts(run_id))
out["plots"] = sorted(
    [f.path, f.is_dir, f.file_size] for f in client.list_artifacts(run_id, "plots")
)
out["deeper"] = sorted(
    [f.path, f.is_dir, f.file_size] for f in client.list_artifacts(run_id, "plots/deeper")
)
everything = Path(mlflow.artifacts.download_artifacts(run_id=run_id, dst_path=str(work / "all")))
out["downloaded"] = {
    str(p.relative_to(everything)): hashlib.sha256(p.read_bytes()).hexdigest()
    for p in everything.rglob("*")
    if p.is_file()
}
one = mlflow.artifacts.download_artifacts(
    run_id=run_id, artifact_path="plots/curve.bin", dst_path=str(work / "one")
)
out["one_equal"] = Path(one).read_bytes() == files["plots/curve.bin"]
out["uploaded"] = {k: hashlib.sha256(v).hexdigest() for k, v in files.items()}
out["sizes"] = {k: len(v) for k, v in files.items()}
out["history"] = {
    key: [[m.step, m.value] for m in client.get_metric_history(run_id, key)]
    for key in ("train_loss", "val_accuracy", "val_loss")
}

# the default experiment "0" ("Default"): the experiments of no project
mlflow.set_experiment(experiment_id="0")
with mlflow.start_run(run_name=args["run_name"] + "-default") as default_run:
    mlflow.log_metric("loss", 1.0)
out["default_run"] = run_dict(mlflow.get_run(default_run.info.run_id))
out["default_search"] = [r.info.run_id for r in client.search_runs(["0"])]
emit(out)
