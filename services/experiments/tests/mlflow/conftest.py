"""Fixtures the MLflow API tests share: ``mlflow``, a caller of the MLflow REST API of the
service app (``client``) under ``/api/2.0/mlflow`` (``mlflow.ajax`` under ``/ajax-api``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from services.experiments.tests.experiments_helpers import Caller

API = "/api/2.0/mlflow"
AJAX = "/ajax-api/2.0/mlflow"
PROXY = "/api/2.0/mlflow-artifacts/artifacts"


def assert_refused(response: Any, status: int, code: str, message: str | None = None) -> str:
    """An answer in MLflow's error shape with this status and code (and ``message`` in its
    text); the text."""
    assert response.status_code == status, response.text
    payload = response.json()
    assert set(payload) == {"error_code", "message"}, payload
    assert payload["error_code"] == code
    if message is not None:
        assert message in payload["message"], payload["message"]
    text: str = payload["message"]
    return text


@dataclass(frozen=True)
class Mlflow:
    client: Any
    prefix: str = API

    @property
    def ajax(self) -> Mlflow:
        return Mlflow(self.client, AJAX)

    async def call(
        self,
        who: Caller,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        params: Any = None,
    ) -> Any:
        """POST ``body`` to ``path``, or GET with ``params`` when no body is given."""
        url = f"{self.prefix}/{path}"
        if body is None:
            return await self.client.get(url, params=params, headers=who.headers)
        return await self.client.post(url, json=body, headers=who.headers)

    async def ok(
        self, who: Caller, path: str, body: dict[str, Any] | None = None, *, params: Any = None
    ) -> dict[str, Any]:
        response = await self.call(who, path, body, params=params)
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found

    async def error(
        self, who: Caller, path: str, body: dict[str, Any] | None = None, *, params: Any = None
    ) -> tuple[int, str]:
        """(status, error_code) of a refused request (MLflow's error shape is asserted)."""
        response = await self.call(who, path, body, params=params)
        assert response.status_code >= 400, response.text
        payload = response.json()
        assert set(payload) == {"error_code", "message"}, payload
        return response.status_code, payload["error_code"]

    async def new_experiment(self, who: Caller, name: str = "vision", **body: Any) -> str:
        created = await self.ok(who, "experiments/create", {"name": name, **body})
        experiment_id: str = created["experiment_id"]
        return experiment_id

    async def new_run(self, who: Caller, experiment_id: str = "0", **body: Any) -> dict[str, Any]:
        created = await self.ok(
            who,
            "runs/create",
            {"experiment_id": experiment_id, "start_time": 1_700_000_000_000, **body},
        )
        run: dict[str, Any] = created["run"]
        return run

    async def logged_model_with_file(self, who: Caller, run_id: str) -> str:
        """A logged model of the run in the Default experiment with one file, ``MLmodel``
        (b"m"), uploaded through the artifact proxy; its model id."""
        logged = await self.client.post(
            f"{API}/logged-models",
            json={"experiment_id": "0", "name": "model", "source_run_id": run_id},
            headers=who.headers,
        )
        model_id: str = logged.json()["model"]["info"]["model_id"]
        put = await self.client.put(
            f"{PROXY}/0/models/{model_id}/artifacts/MLmodel", content=b"m", headers=who.headers
        )
        assert put.status_code == 200, put.text
        return model_id

    async def get_run(self, who: Caller, run_id: str) -> dict[str, Any]:
        run: dict[str, Any] = (await self.ok(who, "runs/get", params={"run_id": run_id}))["run"]
        return run


@pytest.fixture
def mlflow(client: Any) -> Mlflow:
    return Mlflow(client)
