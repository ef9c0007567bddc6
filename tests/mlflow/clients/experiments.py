"""Experiments through ``MlflowClient``: the default experiment, create/get/by name, search with
filters and pages, rename, tags, delete (with its runs) and restore, and the errors."""

from __future__ import annotations

import uuid

from _common import arguments, emit, error_of, experiment_dict
from mlflow import MlflowClient
from mlflow.entities import ViewType
from mlflow.tracking._tracking_service.utils import get_tracking_uri
from mlflow.utils.credentials import get_default_host_creds
from mlflow.utils.rest_utils import http_request

prefix = arguments()["prefix"]
client = MlflowClient()
out: dict[str, object] = {}

out["default"] = experiment_dict(client.get_experiment("0"))
out["default_by_name"] = experiment_dict(client.get_experiment_by_name("Default"))
out["default_listed"] = "0" in [e.experiment_id for e in client.search_experiments()]

alpha = client.create_experiment(f"{prefix}-alpha", tags={"team": "vision"})
beta = client.create_experiment(f"{prefix}-beta")
gamma = client.create_experiment(f"{prefix}-gamma")
out["ids"] = {"alpha": alpha, "beta": beta, "gamma": gamma}
out["alpha"] = experiment_dict(client.get_experiment(alpha))
out["alpha_by_name"] = experiment_dict(client.get_experiment_by_name(f"{prefix}-alpha"))
out["missing_by_name"] = experiment_dict(client.get_experiment_by_name(f"{prefix}-nope"))
out["duplicate"] = error_of(client.create_experiment, f"{prefix}-alpha")
out["missing_id"] = error_of(client.get_experiment, str(uuid.uuid4()))

mine = f"name LIKE '{prefix}-%'"
out["search_all"] = [e.name for e in client.search_experiments(filter_string=mine)]
out["search_by_name_asc"] = [
    e.name for e in client.search_experiments(filter_string=mine, order_by=["name ASC"])
]
out["search_by_name_desc"] = [
    e.name for e in client.search_experiments(filter_string=mine, order_by=["name DESC"])
]
out["search_tag"] = [
    e.experiment_id
    for e in client.search_experiments(filter_string=f"{mine} AND tags.team = 'vision'")
]
pages = []
token = None
while True:
    page = client.search_experiments(
        filter_string=mine, order_by=["name ASC"], max_results=2, page_token=token
    )
    pages.append({"names": [e.name for e in page], "token": bool(page.token)})
    token = page.token
    if not token or len(pages) > 5:
        break
out["pages"] = pages

client.set_experiment_tag(alpha, "stage", "dev")
client.set_experiment_tag(alpha, "team", "audio")  # a tag is overwritten
out["alpha_tagged"] = experiment_dict(client.get_experiment(alpha))

client.rename_experiment(beta, f"{prefix}-delta")
out["beta_renamed"] = experiment_dict(client.get_experiment(beta))
out["beta_old_name"] = experiment_dict(client.get_experiment_by_name(f"{prefix}-beta"))
out["rename_taken"] = error_of(client.rename_experiment, beta, f"{prefix}-alpha")

# deleting an experiment deletes its runs; restoring it restores them
run = client.create_run(gamma, run_name="in-gamma")
client.delete_experiment(gamma)
out["gamma_deleted"] = experiment_dict(client.get_experiment(gamma))
out["gamma_run_deleted"] = client.get_run(run.info.run_id).info.lifecycle_stage
out["active_only"] = [e.name for e in client.search_experiments(filter_string=mine)]
out["deleted_only"] = [
    e.name for e in client.search_experiments(ViewType.DELETED_ONLY, filter_string=mine)
]
out["view_all"] = [e.name for e in client.search_experiments(ViewType.ALL, filter_string=mine)]
out["rename_deleted"] = error_of(client.rename_experiment, gamma, f"{prefix}-epsilon")
client.restore_experiment(gamma)
out["gamma_restored"] = experiment_dict(client.get_experiment(gamma))
out["gamma_run_restored"] = client.get_run(run.info.run_id).info.lifecycle_stage
client.delete_experiment(gamma)  # left deleted, for the test to look at through Runyard's API
out["run_id_in_gamma"] = run.info.run_id

# the UI's prefix answers the same
creds = get_default_host_creds(get_tracking_uri())
ajax = http_request(
    creds, "/ajax-api/2.0/mlflow/experiments/get", "GET", params={"experiment_id": alpha}
)
out["ajax_get"] = {"status": ajax.status_code, "body": ajax.json() if ajax.ok else ajax.text[:500]}

out["delete_default"] = error_of(client.delete_experiment, "0")
out["default_after"] = experiment_dict(client.get_experiment("0"))
emit(out)
