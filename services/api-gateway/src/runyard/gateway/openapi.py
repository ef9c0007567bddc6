"""One OpenAPI document for the whole API, merged live from the services' own documents."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from runyard.gateway.auth import is_public
from runyard.gateway.proxy import API_PREFIX, AREAS
from runyard.shared.logging import get_logger

log = get_logger(__name__)

SCHEMA_REF = "#/components/schemas/"
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
BEARER_SCHEME = "bearerAuth"
API_KEY_SCHEME = "apiKeyAuth"
#: The gateway's own paths (admin endpoints) merge in under this name.
GATEWAY = "gateway"


def gateway_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Runyard API",
            "version": "1.0.0",
            "description": "Experiment tracking, notifications and webhooks. Authenticate with "
            "`Authorization: Bearer <access token>` from `POST /api/v1/auth/login`, or with "
            "`X-API-Key: <key>` from `POST /api/v1/auth/api-keys`. Errors are RFC 9457 "
            "`application/problem+json`; 429 answers carry `Retry-After` and `RateLimit-*`.",
        },
        "paths": {},
        "components": {
            "schemas": {},
            "securitySchemes": {
                BEARER_SCHEME: {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                API_KEY_SCHEME: {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
        "security": [{BEARER_SCHEME: []}, {API_KEY_SCHEME: []}],
    }


def _rewrite_refs(node: Any, renames: Mapping[str, str]) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith(SCHEMA_REF):
                name = value[len(SCHEMA_REF) :]
                out[key] = SCHEMA_REF + renames.get(name, name)
            else:
                out[key] = _rewrite_refs(value, renames)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(v, renames) for v in node]
    return node


def _owner(path: str) -> str | None:
    if not path.startswith(API_PREFIX):
        return None
    area = path[len(API_PREFIX) :].split("/", 1)[0]
    return GATEWAY if area == "admin" else AREAS.get(area)


def merge_documents(documents: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Merge ``{service: openapi document}``.

    Only paths the gateway routes to that service are kept. A schema name that two services
    define differently is renamed ``<service>.<name>`` in the later one (refs rewritten).
    """
    merged = gateway_document()
    schemas: dict[str, Any] = merged["components"]["schemas"]
    tags: dict[str, Any] = {}
    for service, document in documents.items():
        own: dict[str, Any] = dict(document.get("components", {}).get("schemas", {}))
        renames: dict[str, str] = {}
        while True:
            rewritten = {name: _rewrite_refs(schema, renames) for name, schema in own.items()}
            clashes = {
                name: f"{service}.{name}"
                for name, schema in rewritten.items()
                if name not in renames and name in schemas and schemas[name] != schema
            }
            if not clashes:
                break
            renames.update(clashes)
        for name, schema in rewritten.items():
            schemas[renames.get(name, name)] = schema
        for path, item in document.get("paths", {}).items():
            if _owner(path) != service:
                continue
            if path in merged["paths"]:
                log.warning("gateway.openapi.duplicate_path", path=path, service=service)
                continue
            item = _rewrite_refs(copy.deepcopy(item), renames)
            for method, operation in item.items():
                if method in HTTP_METHODS and is_public(method, path):
                    operation["security"] = []
            merged["paths"][path] = item
        for tag in document.get("tags", []):
            tags.setdefault(tag.get("name"), tag)
    if tags:
        merged["tags"] = list(tags.values())
    return merged


FetchDocument = Callable[[str, str], Awaitable[dict[str, Any]]]


class OpenApiAggregator:
    """Fetches every upstream's ``/openapi.json``, caches briefly. A service that does not answer
    keeps its last fetched document (a busy service never makes its paths vanish); one never
    fetched is left out until it answers."""

    def __init__(
        self,
        upstreams: Mapping[str, str],
        fetch: FetchDocument,
        *,
        ttl_s: float,
        own: Callable[[], Awaitable[dict[str, Any]]] | None = None,
    ) -> None:
        self._own = own
        self._upstreams = dict(upstreams)
        self._fetch = fetch
        self._ttl = ttl_s
        self._document: dict[str, Any] | None = None
        self._last_good: dict[str, dict[str, Any]] = {}
        self._built_at = 0.0
        self._lock = asyncio.Lock()

    async def document(self) -> dict[str, Any]:
        if self._document is not None and time.monotonic() - self._built_at < self._ttl:
            return self._document
        async with self._lock:
            if self._document is not None and time.monotonic() - self._built_at < self._ttl:
                return self._document
            names = list(self._upstreams)
            results = await asyncio.gather(
                *(self._fetch(name, self._upstreams[name]) for name in names),
                return_exceptions=True,
            )
            documents: dict[str, dict[str, Any]] = {}
            if self._own is not None:
                documents[GATEWAY] = await self._own()
            for name, result in zip(names, results, strict=True):
                if isinstance(result, BaseException):
                    log.warning(
                        "gateway.openapi.upstream_skipped",
                        service=name,
                        error=repr(result),
                        stale=name in self._last_good,
                    )
                    if name in self._last_good:
                        documents[name] = self._last_good[name]
                else:
                    documents[name] = self._last_good[name] = result
            self._document = merge_documents(documents)
            self._built_at = time.monotonic()
            return self._document
