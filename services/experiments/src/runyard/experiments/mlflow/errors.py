"""MLflow's error shape: ``{"error_code": "...", "message": "..."}`` with MLflow's HTTP status.

Every route of the package uses ``MlflowRoute``: whatever the request raises (an
``MlflowError``, a Runyard ``ProblemError``, a validation error, an HTTP error) is answered in
the shape the stock client parses into an ``MlflowException`` with the right ``error_code``; so
is a request to an MLflow path that no route takes (``answer_unrouted_in_mlflow_shape``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from runyard.shared.http import ProblemError

#: MLflow's ``ERROR_CODE_TO_HTTP_STATUS``
STATUS_OF: dict[str, int] = {
    "INTERNAL_ERROR": 500,
    "TEMPORARILY_UNAVAILABLE": 503,
    "REQUEST_LIMIT_EXCEEDED": 429,
    "ENDPOINT_NOT_FOUND": 404,
    "RESOURCE_DOES_NOT_EXIST": 404,
    "PERMISSION_DENIED": 403,
    "UNAUTHENTICATED": 401,
    "BAD_REQUEST": 400,
    "RESOURCE_ALREADY_EXISTS": 400,
    "INVALID_PARAMETER_VALUE": 400,
    "INVALID_STATE": 400,
    "RESOURCE_LIMIT_EXCEEDED": 400,
    "RESOURCE_CONFLICT": 409,
}

#: a Runyard problem's status -> the MLflow code the client expects for it
CODE_OF_STATUS: dict[int, str] = {
    400: "INVALID_PARAMETER_VALUE",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "RESOURCE_DOES_NOT_EXIST",
    405: "ENDPOINT_NOT_FOUND",
    409: "INVALID_STATE",
    413: "RESOURCE_LIMIT_EXCEEDED",
    415: "BAD_REQUEST",
    422: "INVALID_PARAMETER_VALUE",
    429: "REQUEST_LIMIT_EXCEEDED",
    503: "TEMPORARILY_UNAVAILABLE",
}


class MlflowError(Exception):
    """An error the client sees as ``MlflowException(message, error_code)``."""

    def __init__(self, message: str, error_code: str = "INVALID_PARAMETER_VALUE") -> None:
        super().__init__(message)
        self.message = message
        self.error_code = error_code
        self.status = STATUS_OF.get(error_code, 400)


def invalid(message: str) -> MlflowError:
    return MlflowError(message, "INVALID_PARAMETER_VALUE")


def not_found(message: str) -> MlflowError:
    return MlflowError(message, "RESOURCE_DOES_NOT_EXIST")


def already_exists(message: str) -> MlflowError:
    return MlflowError(message, "RESOURCE_ALREADY_EXISTS")


def mlflow_response(error_code: str, message: str, status: int | None = None) -> JSONResponse:
    return JSONResponse(
        {"error_code": error_code, "message": message},
        status_code=status or STATUS_OF.get(error_code, 400),
    )


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body", "query"))
        parts.append(f"{where}: {error.get('msg', 'invalid')}" if where else error.get("msg", ""))
    return "Invalid value: " + "; ".join(parts)


def as_mlflow(exc: Exception) -> JSONResponse | None:
    """The MLflow-shaped answer to an exception, or None for one that is not the client's."""
    if isinstance(exc, MlflowError):
        return mlflow_response(exc.error_code, exc.message, exc.status)
    if isinstance(exc, RequestValidationError):
        return mlflow_response("INVALID_PARAMETER_VALUE", _validation_message(exc))
    if isinstance(exc, ProblemError):
        code = CODE_OF_STATUS.get(
            exc.status, "INTERNAL_ERROR" if exc.status >= 500 else "BAD_REQUEST"
        )
        # MLflow answers INVALID_PARAMETER_VALUE with 400, never 422 (Runyard's validation)
        status = 400 if exc.status == 422 else exc.status
        response = mlflow_response(code, exc.detail or exc.title, status)
        response.headers.update(exc.headers)
        return response
    if isinstance(exc, StarletteHTTPException):
        code = CODE_OF_STATUS.get(exc.status_code, "BAD_REQUEST")
        return mlflow_response(code, str(exc.detail), exc.status_code)
    return None


#: The paths MLflow's API is served under here (``routing``, ``artifacts_api``): a request to one
#: that no route takes is answered in MLflow's shape too
MLFLOW_PATH_PREFIXES = (
    "/api/2.0/mlflow/",
    "/ajax-api/2.0/mlflow/",
    "/api/2.0/mlflow-artifacts/",
    "/ajax-api/2.0/mlflow-artifacts/",
)


def answer_unrouted_in_mlflow_shape(app: FastAPI) -> None:
    """The app's 404 and 405 for a path under ``MLFLOW_PATH_PREFIXES`` that no route takes (an
    endpoint Runyard does not serve, a method it does not take) as MLflow's
    ``ENDPOINT_NOT_FOUND``, as the gateway answers the MLflow paths no service serves; every
    other path keeps the app's problem+json."""
    problem = app.exception_handlers[StarletteHTTPException]

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code in (404, 405) and request.url.path.startswith(MLFLOW_PATH_PREFIXES):
            message = (
                "No such MLflow endpoint."
                if exc.status_code == 404
                else f"This MLflow endpoint does not take {request.method}."
            )
            response = mlflow_response("ENDPOINT_NOT_FOUND", message, exc.status_code)
            response.headers.update(exc.headers or {})
            return response
        answer = problem(request, exc)
        return await answer if inspect.isawaitable(answer) else answer

    app.add_exception_handler(StarletteHTTPException, on_http)


async def _check_mlflow_schema(path: str, request: Request) -> None:
    """MLflow's checks of the JSON body (``request_schema``), before pydantic reads it: the
    request keeps the parsed body (``Request.json``), and FastAPI's handler reads it from there
    rather than parsing the bytes again."""
    from runyard.experiments.mlflow.request_schema import check_body

    if not await request.body():
        return
    try:
        body = await request.json()
    except ValueError:
        return  # not JSON: the handler's parsing answers it
    check_body(path, body)


def _schema_of(route: APIRoute) -> str | None:
    """The ``request_schema`` path of a POST route that has a schema, else None: only those
    bodies are read ahead of the handler (a streamed upload's never is)."""
    from runyard.experiments.mlflow.request_schema import SCHEMAS, schema_path

    if "POST" not in (route.methods or set()):
        return None
    path = schema_path(route.path)
    return path if path in SCHEMAS else None


class MlflowRoute(APIRoute):
    """A route whose errors come out in MLflow's shape (request validation included)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        checked = _schema_of(self)

        async def handle(request: Request) -> Response:
            try:
                if checked is not None:
                    await _check_mlflow_schema(checked, request)
                return await handler(request)
            except Exception as exc:
                response = as_mlflow(exc)
                if response is None:
                    raise
                return response

        return handle


def error_responses() -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of an MLflow route: MLflow's error body."""
    schema = {
        "type": "object",
        "properties": {"error_code": {"type": "string"}, "message": {"type": "string"}},
    }
    return {
        "4XX": {"description": "MLflow error", "content": {"application/json": {"schema": schema}}}
    }
