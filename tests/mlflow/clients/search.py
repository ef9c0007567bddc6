"""``search_runs`` over four runs: the filter grammar (metrics, params, tags, attributes, AND,
LIKE, IN), order_by, pages with page_token, run_view_type; and the bulk-interval metric
history the MLflow UI draws its charts from."""

from __future__ import annotations

import time

from _common import arguments, emit, error_of
from mlflow import MlflowClient
from mlflow.entities import ViewType
from mlflow.tracking._tracking_service.utils import get_tracking_uri
from mlflow.utils.credentials import get_default_host_creds
from mlflow.utils.rest_utils import http_request

prefix = arguments()["prefix"]
client = MlflowClient()
out: dict[str, object] = {}

experiment_id = client.create_experiment(f"{prefix}-search")
other_id = client.create_experiment(f"{prefix}-search-other")
now = int(time.time() * 1000)
ids: dict[str, str] = {}
for name, lr, acc, model, status in (
    ("a", "0.1", 0.9, "cnn", "FINISHED"),
    ("b", "0.01", 0.7, "mlp", "RUNNING"),
    ("c", "0.001", 0.8, "cnn", "FAILED"),
    ("d", "0.5", 0.95, "cnn", "RUNNING"),
):
    run = client.create_run(experiment_id, run_name=f"run-{name}", tags={"model": model})
    run_id = run.info.run_id
    ids[name] = run_id
    client.log_param(run_id, "lr", lr)
    for step in range(5):
        client.log_metric(run_id, "loss", acc / (step + 1), timestamp=now + step, step=step)
    client.log_metric(run_id, "acc", acc, timestamp=now + 10, step=4)
    if status != "RUNNING":
        client.set_terminated(run_id, status=status)
client.delete_run(ids["d"])
elsewhere = client.create_run(other_id, run_name="run-e", tags={"model": "cnn"}).info.run_id
client.log_metric(elsewhere, "acc", 0.99)
ids["e"] = elsewhere
out["ids"] = ids
out["experiment_id"] = experiment_id
names = {v: k for k, v in ids.items()}


def search(**kwargs: object) -> list[str]:
    kwargs.setdefault("experiment_ids", [experiment_id])
    return [names.get(r.info.run_id, r.info.run_id) for r in client.search_runs(**kwargs)]


def unordered(**kwargs: object) -> list[str]:
    return sorted(search(**kwargs))


out["all_default"] = unordered()
out["metric_gt"] = unordered(filter_string="metrics.acc > 0.75")
out["metric_le"] = unordered(filter_string="metrics.acc <= 0.8")
out["param_eq"] = unordered(filter_string="params.lr = '0.01'")
out["param_ne"] = unordered(filter_string="params.lr != '0.01'")
out["tag_eq"] = unordered(filter_string="tags.model = 'cnn'")
out["tag_like"] = unordered(filter_string="tags.model LIKE 'm%'")
out["tag_backticks"] = unordered(filter_string="tags.`model` = 'mlp'")
out["status"] = unordered(filter_string="attributes.status = 'FINISHED'")
out["status_ne"] = unordered(filter_string="attributes.status != 'RUNNING'")
out["run_name"] = unordered(filter_string="attributes.run_name = 'run-b'")
out["run_name_like"] = unordered(filter_string="attributes.run_name ILIKE 'RUN-%'")
out["run_id_in"] = unordered(filter_string=f"attributes.run_id IN ('{ids['a']}', '{ids['c']}')")
out["and"] = unordered(filter_string="metrics.acc > 0.75 AND tags.model = 'cnn'")
out["and_param"] = unordered(filter_string="params.lr = '0.1' and metrics.loss < 1")
out["two_experiments"] = unordered(
    experiment_ids=[experiment_id, other_id], filter_string="tags.model = 'cnn'"
)
out["order_metric_desc"] = search(order_by=["metrics.acc DESC"])
out["order_metric_asc"] = search(order_by=["metrics.acc ASC"])
out["order_param"] = search(order_by=["params.lr ASC"])
out["order_name_desc"] = search(order_by=["attributes.run_name DESC"])
pages = []
token = None
while True:
    page = client.search_runs(
        [experiment_id], order_by=["metrics.acc DESC"], max_results=2, page_token=token
    )
    pages.append({"runs": [names[r.info.run_id] for r in page], "token": bool(page.token)})
    token = page.token
    if not token or len(pages) > 5:
        break
out["pages"] = pages
out["deleted_only"] = unordered(run_view_type=ViewType.DELETED_ONLY)
out["view_all"] = unordered(run_view_type=ViewType.ALL)
out["bad_filter"] = error_of(client.search_runs, [experiment_id], filter_string="metrics.acc >>> 1")
out["bad_order"] = error_of(client.search_runs, [experiment_id], order_by=["nonsense.x DESC"])
found = client.search_runs([experiment_id], filter_string="attributes.run_name = 'run-a'")
out["found_run"] = {
    "params": dict(found[0].data.params),
    "metrics": dict(found[0].data.metrics),
    "tags": {k: v for k, v in found[0].data.tags.items() if not k.startswith("mlflow.")},
}

# GET /ajax-api/2.0/mlflow/metrics/get-history-bulk-interval, as the UI's charts call it
creds = get_default_host_creds(get_tracking_uri())


def bulk(**params: object) -> object:
    response = http_request(
        creds, "/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval", "GET", params=params
    )
    if response.status_code != 200:
        return {"status": response.status_code, "body": response.text[:500]}
    metrics = response.json().get("metrics", [])
    return [[names[m["run_id"]], m["step"], m["value"]] for m in metrics]


out["bulk_all"] = bulk(run_ids=[ids["a"], ids["b"]], metric_key="loss", max_results=10)
out["bulk_range"] = bulk(
    run_ids=[ids["a"]], metric_key="loss", max_results=10, start_step=1, end_step=3
)
out["bulk_sampled"] = bulk(run_ids=[ids["a"]], metric_key="loss", max_results=3)
emit(out)
