"""MLflow's dataset search (``experiments/search-datasets``, the UI's): the datasets that runs of
some experiments logged as inputs (``runs/log-inputs``, kept in ``experiments.inputs``), one
summary per (experiment, name, digest, context), as MLflow's SQL store lists them.

As in MLflow, the runs' lifecycle does not matter (a deleted run's datasets still count: MLflow
keeps an experiment's datasets whatever becomes of the run that logged them), an experiment
that does not exist (here: that the caller may not read) contributes nothing, and at most
1,000 summaries are answered.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from sqlalchemy import cast, column, func, literal, select, true
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments import access
from runyard.experiments.mlflow import ids
from runyard.experiments.mlflow.errors import invalid
from runyard.experiments.mlflow.filter import DATASET_CONTEXT_TAG
from runyard.experiments.mlflow.search import runs_of
from runyard.experiments.mlflow.service_experiments import project_ids
from runyard.experiments.models import Experiment
from runyard.shared.identity import Principal

#: MLflow's limits: experiments a request may name, summaries an answer holds
MAX_EXPERIMENT_IDS = 20
MAX_SUMMARIES = 1000
JSON_TYPES = ("application/json",)


async def requested_experiment_ids(request: Request) -> list[str]:
    """``experiment_ids`` of the body, read as MLflow's server reads it: a JSON body is required
    (``Content-Type``), and a body that is no JSON object names no experiment."""
    declared = request.headers.get("content-type")
    if declared is None:
        raise invalid("Bad Request. Content-Type header is missing.")
    if declared.split(";")[0].strip() not in JSON_TYPES:
        raise invalid(f"Bad Request. Content-Type must be one of {list(JSON_TYPES)}.")
    try:
        body: Any = json.loads(await request.body() or b"{}")
        if isinstance(body, str):  # older clients encode the JSON twice
            body = json.loads(body)
    except ValueError:
        body = {}
    wanted = body.get("experiment_ids") if isinstance(body, dict) else None
    if not isinstance(wanted, list):
        return []
    return [item if isinstance(item, str) else json.dumps(item) for item in wanted]


def check_experiment_ids(experiment_ids: list[str]) -> None:
    if not experiment_ids:
        raise invalid("SearchDatasets request must specify at least one experiment_id.")
    if len(experiment_ids) > MAX_EXPERIMENT_IDS:
        raise invalid(
            f"SearchDatasets request cannot specify more than {MAX_EXPERIMENT_IDS} "
            f"experiment_ids. Received {len(experiment_ids)} experiment_ids."
        )


async def search_datasets(
    session: AsyncSession, principal: Principal, experiment_ids: list[str]
) -> list[dict[str, str]]:
    """MLflow's ``DatasetSummary``s of the experiments' runs the caller may read (``context``:
    the input's ``mlflow.data.context`` tag, left out when it has none)."""
    check_experiment_ids(experiment_ids)
    wanted = project_ids(experiment_ids)
    entry = func.jsonb_array_elements(Experiment.inputs).table_valued(column("value", JSONB))
    entry = entry.alias("input")
    tags = func.coalesce(entry.c.value["tags"], cast(literal("[]"), JSONB))
    tag = func.jsonb_array_elements(tags).table_valued(column("value", JSONB)).alias("input_tag")
    dataset = entry.c.value["dataset"]
    name, digest = dataset["name"].astext, dataset["digest"].astext
    context = tag.c.value["value"].astext
    query = (
        select(Experiment.project_id, name, digest, context)
        .select_from(Experiment)
        .join(entry, true())
        .outerjoin(tag, tag.c.value["key"].astext == DATASET_CONTEXT_TAG)
        .where(runs_of(principal, wanted), entry.c.value.has_key("dataset"))
        .distinct()
        .order_by(Experiment.project_id.nulls_first(), name, digest, context.nulls_first())
        .limit(MAX_SUMMARIES)
    )
    scope = access.owner_scope(Experiment.owner_id, principal)
    if scope is not None:
        query = query.where(scope)
    summaries: list[dict[str, str]] = []
    for project_id, found_name, found_digest, found_context in await session.execute(query):
        summary = {
            "experiment_id": ids.experiment_id_of(project_id),
            "name": found_name,
            "digest": found_digest,
        }
        if found_context is not None:
            summary["context"] = found_context
        summaries.append(summary)
    return summaries
