"""MLflow's ``runs/log-batch`` and ``runs/log-metric`` taken before FastAPI, as pure ASGI.

A training loop sends one of these per step; the SQL path (``sql_log``) writes its new epochs in
one statement, and what was left of the request's cost was FastAPI's: the exception and exit-stack
middlewares, matching the path against the routers, solving the dependencies, wrapping the
response. ``LogEpochsRoute`` (innermost of the service's middlewares: the request id and the
latency metrics see every request as before) reads the body, checks it as the route would
(identity headers, MLflow's request schema, the pydantic model, MLflow's limits) and hands it to
``service_runs.log_epochs_in_one_statement``; on success it answers ``{}`` as the route does.

Anything else goes on to the router with the body it read, untouched, and the route answers it
as it always did: bad input (the route raises the same error in MLflow's shape), a request the
SQL path does not take (a pending or finished run, a metric logged before at its step, params
or tags), or
any error, the database's included. Sending such a request on is safe even when the statement
may have committed before the error (a connection lost on the reply): the Python path writes
identical values as unchanged, so nothing is written twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runyard.experiments.mlflow import schemas
from runyard.experiments.mlflow import service_runs as service
from runyard.experiments.mlflow.request_schema import check_body
from runyard.experiments.mlflow.routing import AJAX_PREFIX, API_PREFIX
from runyard.shared.identity import verify_identity


@dataclass(frozen=True)
class RouteLabel:
    """What the latency metrics read of a route (its ``path``)."""

    path: str


#: path -> (its schema path in ``request_schema``, whether it is ``log-batch``, its label)
_TAKEN = {
    f"{prefix}/runs/{name}": (
        f"/runs/{name}",
        name == "log-batch",
        RouteLabel(f"{prefix}/runs/{name}"),
    )
    for prefix in (API_PREFIX, AJAX_PREFIX)
    for name in ("log-batch", "log-metric")
}
_ANSWER = b"{}"
_HEADERS = [(b"content-length", b"2"), (b"content-type", b"application/json")]


class LogEpochsRoute:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        taken = _TAKEN.get(scope.get("path", "")) if scope["type"] == "http" else None
        if taken is None or scope["method"] != "POST" or scope.get("root_path"):
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                await self.app(scope, _replay(b"", receive, message), send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        schema_path, batch, label = taken
        try:
            done = await _log(scope, body, schema_path, batch=batch)
        except Exception:  # the route raises it again, in its own shape
            done = False
        if not done:
            await self.app(scope, _replay(body, receive), send)
            return
        scope["route"] = label
        await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
        await send({"type": "http.response.body", "body": _ANSWER})


def _replay(body: bytes, receive: Receive, first: Message | None = None) -> Receive:
    """``receive`` as if nothing had been read: the body read (or the message received) first."""
    pending = [first or {"type": "http.request", "body": body, "more_body": False}]

    async def again() -> Message:
        return pending.pop() if pending else await receive()

    return again


async def _log(scope: Scope, body: bytes, schema_path: str, *, batch: bool) -> bool:
    """True: logged by the SQL path. False (or an exception): nothing written, for the route."""
    runtime = scope["app"].state.runtime
    if not runtime.settings.mlflow_sql_log_path:
        return False
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    if not headers.get("content-type", "").startswith("application/json"):
        return False
    principal = verify_identity(runtime.settings.identity_secret.get_secret_value(), headers)
    data: Any = json.loads(body)
    check_body(schema_path, data)
    if batch:
        request = schemas.LogBatch.model_validate(data)
        run_id, metrics, params, tags = request.id, request.metrics, request.params, request.tags
    else:
        one = schemas.LogMetric.model_validate(data)
        run_id, metrics, params, tags = one.id, [one.metric()], [], []
    done: bool = await service.log_epochs_in_one_statement(
        runtime, principal, run_id, metrics=metrics, params=params, tags=tags, batch=batch
    )
    return done
