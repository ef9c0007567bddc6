"""MLflow's REST API at the gateway, for the stock MLflow client (``MLFLOW_TRACKING_URI``
pointed at the gateway).

The experiments service serves MLflow's paths as they are (``/api/2.0/mlflow/...``,
``/api/2.0/mlflow-artifacts/...`` and their ``/ajax-api/`` twins, and the MLflow UI's
``/get-artifact`` and ``/model-versions/get-artifact`` at the root), so the gateway forwards them
unchanged, with the hardening of every proxied route. What differs from ``/api/v1``:

- the errors the gateway itself answers are in MLflow's shape, ``{"error_code", "message"}``
  (the client reads ``error_code``), for every path of the MLflow *zone*: any
  ``/api/<major>.<minor>/`` or ``/ajax-api/...`` path, also those no service serves (404
  ``ENDPOINT_NOT_FOUND``, not a console page or problem+json);
- the client's ``MLFLOW_TRACKING_USERNAME``/``PASSWORD`` (HTTP Basic) are accepted here and
  nowhere else (auth.py, docs/security.md);
- API-key scopes: MLflow answers most searches to a POST, so "read" is not only GET
  (``required_scope``);
- artifact uploads (the proxy's PUTs and the UI's ``POST /ajax-api/2.0/mlflow/upload-artifact``)
  are streamed with the upload limit and timeout, like ``/api/v1``'s;
- a path with repeated slashes that merge into an MLflow path is redirected there (308, query
  kept, before auth: ``merged_mlflow_path``), as MLflow's server (werkzeug's
  ``merge_slashes``) redirects it.
"""

from __future__ import annotations

import re
import string
from urllib.parse import quote

from fastapi.responses import JSONResponse, Response

from runyard.gateway.errors import DotSegments
from runyard.shared.http import ProblemError

#: The MLflow paths the experiments service serves, forwarded with the path unchanged.
MLFLOW_PREFIXES: tuple[str, ...] = (
    "/api/2.0/mlflow/",
    "/ajax-api/2.0/mlflow/",
    "/api/2.0/mlflow-artifacts/",
    "/ajax-api/2.0/mlflow-artifacts/",
)
#: MLflow paths outside those prefixes, served at exactly these paths (the UI's downloads of a
#: run's file and of a model version's).
MLFLOW_PATHS: tuple[str, ...] = ("/get-artifact", "/model-versions/get-artifact")
ARTIFACT_PREFIXES: tuple[str, ...] = tuple(p for p in MLFLOW_PREFIXES if "artifacts" in p)
#: The MLflow UI's upload (``?run_uuid=&path=``, the body is the file).
UI_UPLOAD_PATH = "/ajax-api/2.0/mlflow/upload-artifact"
MLFLOW_SERVICE = "experiments"
#: Key of ``GATEWAY_UPSTREAM_TIMEOUTS`` for the MLflow paths (``mlflow=120``).
MLFLOW_AREA = "mlflow"

#: Versioned API paths (MLflow's ``/api/2.0/``, ``/api/3.0/`` ...; never Runyard's ``/api/v1/``)
#: and everything under ``/ajax-api/``: answered in MLflow's error shape.
_ZONE = re.compile(r"/(?:api/[0-9]+\.[0-9]+|ajax-api)/")

#: MLflow endpoints (after the ``mlflow/`` prefix) that read although they are POSTs.
READ_ONLY_POSTS = frozenset(
    {
        "runs/search",
        "experiments/search",
        "experiments/search-datasets",
        "logged-models/search",
        "datasets/search",
        "metrics/get-history-bulk-interval",
        "registered-models/get-latest-versions",
    }
)
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

#: HTTP status of a gateway error -> MLflow's ``error_code`` (``mlflow.exceptions``' table,
#: 413 as Databricks names it).
ERROR_CODES: dict[int, str] = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "ENDPOINT_NOT_FOUND",
    405: "ENDPOINT_NOT_FOUND",
    413: "RESOURCE_LIMIT_EXCEEDED",
    429: "REQUEST_LIMIT_EXCEEDED",
    500: "INTERNAL_ERROR",
    502: "TEMPORARILY_UNAVAILABLE",
    503: "TEMPORARILY_UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


class UnknownMlflowEndpoint(ProblemError):
    """404: a path of the MLflow zone that no service serves."""

    def __init__(self) -> None:
        super().__init__(404, "Not Found", "No such MLflow endpoint.")


class MlflowMethodNotAllowed(ProblemError):
    def __init__(self, method: str) -> None:
        super().__init__(405, "Method Not Allowed", f"MLflow endpoints do not take {method}.")


def in_mlflow_zone(path: str) -> bool:
    return _ZONE.match(path) is not None or path in MLFLOW_PATHS


def mlflow_prefix(path: str) -> str | None:
    """The MLflow prefix ``path`` starts with (or the path itself, one of ``MLFLOW_PATHS``),
    else None."""
    if path in MLFLOW_PATHS:
        return path
    return next((p for p in MLFLOW_PREFIXES if path.startswith(p)), None)


def route_mlflow(path: str) -> str:
    """The service serving ``path`` (a path of the zone), else 404 (400 for dot segments)."""
    if any(s in (".", "..") for s in path.split("/")):
        raise DotSegments()
    if mlflow_prefix(path) is None or "\n" in path:
        raise UnknownMlflowEndpoint()
    return MLFLOW_SERVICE


def is_mlflow_path(path: str) -> bool:
    return mlflow_prefix(path) is not None


_REPEATED_SLASHES = re.compile(r"/{2,}")
#: MLflow's routes that end in a file's path (``.../artifacts/<path:artifact_path>``): slashes
#: after these are the file's, served as they are, not merged.
_FILE_PATH_ROUTE = re.compile(
    r"/(?:api|ajax-api)/2\.0/mlflow-artifacts/(?:artifacts|presigned|mpu/(?:create|complete|abort))/"
)
#: Location of the redirect: the merged (decoded) path encoded again, the query as sent (spaces,
#: controls, non-ASCII and ``#`` escaped).
_PATH_SAFE = "/!$&'()*+,;=:@"
_QUERY_SAFE = string.punctuation.replace("#", "")


def merged_mlflow_path(path: str) -> str | None:
    """Where MLflow's server redirects ``path`` (decoded), a path with repeated slashes: the
    path with them merged, when that is an MLflow path; else None (no repeats, dot segments,
    or not MLflow's once merged), and the request goes on as any other.

    As werkzeug matches it: leading slashes are ignored (MLflow serves ``//get-artifact`` in
    place; the gateway, which forwards paths unchanged, redirects it too), and a file's path
    after ``mlflow-artifacts/artifacts/`` keeps its slashes. The result is a path of this host:
    it starts with one slash and an MLflow prefix, never ``//host``."""
    if "//" not in path or any(s in (".", "..") for s in path.split("/")):
        return None
    merged = "/" + path.lstrip("/")
    if _FILE_PATH_ROUTE.match(merged) is None:
        merged = _REPEATED_SLASHES.sub("/", merged)
    return merged if merged != path and is_mlflow_path(merged) else None


def merged_path_redirect(merged: str, query_string: bytes) -> Response:
    """308 (method and body kept, as werkzeug's ``RequestRedirect``) to ``merged`` on this host."""
    location = quote(merged, safe=_PATH_SAFE)
    if query_string:
        location += "?" + quote(query_string, safe=_QUERY_SAFE)
    return Response(status_code=308, headers={"Location": location})


def is_mlflow_upload(method: str, path: str) -> bool:
    """A streamed artifact upload: any PUT under ``mlflow-artifacts/`` (run artifacts and
    logged models' artifacts, ``.../artifacts/<experiment>/models/<model>/artifacts/...``), or
    the UI's ``upload-artifact`` POST."""
    if method == "POST":
        return path == UI_UPLOAD_PATH
    return method == "PUT" and path.startswith(ARTIFACT_PREFIXES)


def mlflow_reads(method: str, path: str) -> bool:
    """Whether the request only reads: GET/HEAD/OPTIONS, or one of MLflow's search POSTs."""
    if method in _READ_METHODS:
        return True
    prefix = mlflow_prefix(path)
    if method != "POST" or prefix is None or "artifacts" in prefix:
        return False
    return path[len(prefix) :].rstrip("/") in READ_ONLY_POSTS


def mlflow_error_response(exc: ProblemError) -> JSONResponse:
    """The gateway's error in MLflow's shape, same status and headers (``Retry-After``,
    ``WWW-Authenticate``, ``RateLimit-*``)."""
    code = ERROR_CODES.get(exc.status) or ("INTERNAL_ERROR" if exc.status >= 500 else "BAD_REQUEST")
    return JSONResponse(
        {"error_code": code, "message": exc.detail or exc.title},
        status_code=exc.status,
        headers=exc.headers,
    )
