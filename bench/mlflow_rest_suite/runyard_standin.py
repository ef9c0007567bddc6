"""Stand-in for the server fixtures of MLflow's ``tests/tracking/test_rest_tracking.py``: runs
that module against a running Runyard (``RUNYARD_URL``, default ``http://127.0.0.1:8000``, the
gateway of ``make up``) instead of an MLflow server it starts per test. See ``README.md``.

Starts no server. For each test: signs up a fresh Runyard user through the gateway's public
API, logs in, creates an API key with ``experiments:read`` and ``experiments:write``, exports it
as ``MLFLOW_TRACKING_TOKEN`` and yields ``MlflowClient(RUNYARD_URL)``. The tests' raw
``requests`` calls to the gateway get the same key as ``Authorization: Bearer <key>`` (a wrapper
around ``requests.Session.request``, which ``requests.get``/``post`` go through), unless they
carry credentials of their own.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from mlflow import MlflowClient

RUNYARD_URL = os.environ.get("RUNYARD_URL", "http://127.0.0.1:8000").rstrip("/")
PASSWORD = "correct horse battery staple"
_REQUEST = requests.Session.request


def _public_post(
    path: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> requests.Response:
    """POST to the gateway; sign-ups and logins share a per-address limit (60 a minute): a 429
    is waited out and sent again."""
    with requests.Session() as session:
        for _ in range(60):
            response = _REQUEST(
                session, "POST", RUNYARD_URL + path, json=body, headers=headers or {}, timeout=60
            )
            if response.status_code != 429:
                return response
            time.sleep(min(float(response.headers.get("Retry-After") or 2), 10))
    return response


def new_api_key() -> str:
    """A new Runyard user's API key for MLflow's client (read and write experiments)."""
    username = "mlt" + uuid.uuid4().hex[:16]
    registered = _public_post(
        "/api/v1/auth/register",
        {"username": username, "email": f"{username}@example.test", "password": PASSWORD},
    )
    assert registered.status_code in (200, 201), registered.text
    login = _public_post("/api/v1/auth/login", {"login": username, "password": PASSWORD})
    assert login.status_code == 200, login.text
    token = login.json()["access_token"]
    created = _public_post(
        "/api/v1/auth/api-keys",
        {
            "name": "mlflow-suite",
            "scopes": ["experiments:read", "experiments:write"],
            "current_password": PASSWORD,
        },
        headers={"Authorization": f"Bearer {token}"},
    )
    assert created.status_code in (200, 201), created.text
    key: str = created.json()["key"]
    return key


#: Tests of what Runyard does not serve (``docs/mlflow.md``, "Not supported"), left out by
#: ``pytest_collection_modifyitems`` when this module is loaded as a plugin (``-p``): traces,
#: assessments, scorers, the AI gateway (secrets, endpoints, providers), the prompt lab, GenAI
#: evaluation datasets, issues and GraphQL; and two that exercise MLflow's own server code
#: in-process (a handler against a local store; a server started with MLflow's source regex).
NOT_SERVED = frozenset(
    {
        "test_add_dataset_to_experiments_rest_tracking",
        "test_add_multiple_experiments_at_once_rest_tracking",
        "test_assessments_end_to_end",
        "test_attach_detach_model_to_endpoint",
        "test_calculate_trace_filter_correlation",
        "test_client_api_add_remove_experiments_rest_tracking",
        "test_create_and_get_endpoint",
        "test_create_and_get_evaluation_dataset",
        "test_create_and_get_secret",
        "test_create_and_update_compound_secret_via_rest",
        "test_create_endpoint_with_usage_tracking",
        "test_create_issue_invalid_experiment",
        "test_create_issue_minimal_fields",
        "test_create_issue_with_all_fields",
        "test_create_issue_with_required_fields",
        "test_create_model_version_with_validation_regex",
        "test_create_promptlab_run_handler_rejects_invalid_requests",
        "test_create_promptlab_run_handler_returns_expected_results",
        "test_create_secret_with_dict_value",
        "test_dataset_experiment_association_error_cases_rest_tracking",
        "test_delete_endpoint",
        "test_delete_secret",
        "test_delete_traces",
        "test_endpoint_bindings",
        "test_endpoint_with_orphaned_model_definition",
        "test_evaluation_dataset_delete",
        "test_evaluation_dataset_tag_operations",
        "test_evaluation_dataset_upsert_records",
        "test_gateway_proxy_handler_rejects_invalid_requests",
        "test_get_experiment_graphql",
        "test_get_issue",
        "test_get_issue_not_found",
        "test_get_metric_history_bulk_calls_optimized_impl_when_expected",
        "test_get_metric_history_bulk_interval_graphql",
        "test_get_provider_config",
        "test_get_run_and_experiment_graphql",
        "test_get_secrets_config_with_custom_passphrase",
        "test_get_secrets_config_with_default_passphrase",
        "test_get_trace",
        "test_get_trace_artifact_handler",
        "test_get_trace_handler",
        "test_graphql_handler",
        "test_graphql_handler_batching_raise_error",
        "test_graphql_nan_metric_handling",
        "test_idempotent_add_experiments_rest_tracking",
        "test_idempotent_remove_experiments_rest_tracking",
        "test_legacy_start_and_end_trace_v2",
        "test_link_traces_to_run_and_search_traces",
        "test_list_artifacts_graphql",
        "test_list_endpoints",
        "test_list_models",
        "test_list_providers",
        "test_list_secret_infos",
        "test_model_definitions",
        "test_online_scoring_config",
        "test_query_trace_metrics",
        "test_remove_dataset_from_experiments_rest_tracking",
        "test_rest_store_logs_spans_via_otel_endpoint",
        "test_scorer_CRUD",
        "test_search_datasets_graphql",
        "test_search_evaluation_datasets",
        "test_search_issues_by_experiment",
        "test_search_issues_by_status",
        "test_search_issues_no_filters",
        "test_search_issues_sorted_by_timestamp",
        "test_search_issues_with_pagination",
        "test_search_runs_graphql",
        "test_search_traces",
        "test_search_traces_match_text",
        "test_search_traces_parameter_validation",
        "test_secrets_and_endpoints_integration",
        "test_set_and_delete_trace_tag",
        "test_start_trace",
        "test_update_endpoint",
        "test_update_issue",
        "test_update_model_definition_provider",
        "test_update_secret",
        "test_update_secret_with_dict_value",
    }
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    kept, left_out = [], []
    for item in items:
        name = getattr(item, "originalname", item.name)
        (left_out if name in NOT_SERVED else kept).append(item)
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = kept


@pytest.fixture(params=["sqlalchemy"])
def store_type(request: pytest.FixtureRequest) -> str:
    """Runyard has one store: each test runs once, under the sqlalchemy parametrization's id."""
    param: str = request.param
    return param


@pytest.fixture
def mlflow_client(store_type: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[MlflowClient]:
    key = new_api_key()
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", key)

    def request(
        self: requests.Session, method: str, url: Any, *args: Any, **kwargs: Any
    ) -> requests.Response:
        if isinstance(url, str) and url.startswith(RUNYARD_URL):
            headers = dict(kwargs.get("headers") or {})
            has_auth = any(k.lower() == "authorization" for k in headers) or (
                "Authorization" in self.headers
            )
            if not has_auth and kwargs.get("auth") is None:
                headers["Authorization"] = f"Bearer {key}"
                kwargs["headers"] = headers
        return _REQUEST(self, method, url, *args, **kwargs)

    monkeypatch.setattr(requests.Session, "request", request)
    yield MlflowClient(RUNYARD_URL)
