"""MLflow's API is served under two prefixes: ``/api/2.0/mlflow`` (the client's) and
``/ajax-api/2.0/mlflow`` (the MLflow UI's), with the same handlers."""

from __future__ import annotations

from fastapi import APIRouter

API_PREFIX = "/api/2.0/mlflow"
AJAX_PREFIX = "/ajax-api/2.0/mlflow"


def both_prefixes(router: APIRouter, tag: str) -> tuple[APIRouter, APIRouter]:
    """The router under each prefix; the ajax copy stays out of the OpenAPI document (its
    operations would repeat the others')."""
    api = APIRouter(prefix=API_PREFIX, tags=[tag])
    api.include_router(router)
    ajax = APIRouter(prefix=AJAX_PREFIX, include_in_schema=False)
    ajax.include_router(router)
    return api, ajax
