"""The gateway under test runs on uvicorn in front of real upstream HTTP servers (echo apps).

Each upstream records every request it receives and answers with what it saw. The auth upstream
also serves a JWKS with a test Ed25519 key; tests sign real access tokens with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import create_model

from runyard.gateway.config import Settings
from runyard.gateway.main import create_app
from runyard.shared.db import asyncpg_dsn
from runyard.shared.identity import verify_internal_call
from runyard.shared.settings import dev_secret
from runyard.shared.testing import ServiceDatabase
from runyard.shared.testing.serving import serve as serve_app

JWKS_PATH = "/api/v1/auth/.well-known/jwks.json"


@contextlib.asynccontextmanager
async def serve(app: Any, port: int = 0) -> AsyncIterator[str]:
    """Serve an ASGI app with uvicorn on a loopback port (a free one by default); yield its URL."""
    # the gateway decides whom to believe (GATEWAY_TRUSTED_PROXIES)
    async with serve_app(app, port, proxy_headers=False) as url:
        yield url


def pattern(size: int) -> bytes:
    """``size`` bytes that are not all alike, so a reordered or cut body shows."""
    block = bytes(range(256))
    return (block * (size // 256 + 1))[:size]


async def _eventually(predicate: Callable[[], Any], *, within_s: float = 20.0) -> Any:
    """Poll an (async or plain) predicate until it returns something truthy."""
    deadline = time.monotonic() + within_s
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


@dataclass
class SigningKey:
    kid: str
    private: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)

    def jwk(self) -> dict[str, Any]:
        public = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(self.private.public_key()))
        return {**public, "kid": self.kid, "use": "sig", "alg": "EdDSA"}

    def token(self, **claims: Any) -> str:
        """An access token as auth issues it; keyword arguments override claims (None drops one)."""
        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": "runyard",
            "aud": "runyard-api",
            "sub": str(uuid.uuid4()),
            "role": "user",
            "preferred_username": "ada",
            "sid": str(uuid.uuid4()),
            "iat": now,
            "exp": now + 900,
            "jti": str(uuid.uuid4()),
            "typ": "access",
        }
        payload.update(claims)
        payload = {k: v for k, v in payload.items() if v is not None}
        return jwt.encode(payload, self.private, algorithm="EdDSA", headers={"kid": self.kid})


@dataclass
class Upstream:
    """A running echo service: what it received, and the JWKS it serves."""

    name: str
    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    jwks: dict[str, Any] = field(default_factory=lambda: {"keys": []})
    jwks_fetches: int = 0
    #: auth only: API key -> its identity (``/internal/v1/api-keys/verify``)
    api_keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: auth only: session id -> its state; sessions not listed are live
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    internal_calls: list[dict[str, str]] = field(default_factory=list)

    def received_headers(self, index: int = -1) -> dict[str, list[str]]:
        """Headers of one received request, lower-cased names, every value kept."""
        headers: dict[str, list[str]] = {}
        for key, value in self.requests[index]["headers"]:
            headers.setdefault(key.lower(), []).append(value)
        return headers


def echo_app(upstream: Upstream) -> FastAPI:
    app = FastAPI(title=f"{upstream.name} echo")
    name = upstream.name
    echo_model = create_model("Echo", **{f"{name}_field": (str, ...)})  # same name everywhere

    async def echo(request: Request) -> Response:
        body = await request.body()
        record = {
            "service": name,
            "method": request.method,
            "raw_path": request.scope["raw_path"].decode(),
            "query": request.scope["query_string"].decode(),
            "body": body.decode("latin-1"),
            "headers": [[k, v] for k, v in request.headers.items()],
        }
        upstream.requests.append(record)
        if "sleep" in request.query_params:
            await asyncio.sleep(float(request.query_params["sleep"]))
        if "mirror" in request.query_params:  # answer with the request's JSON body
            return JSONResponse(json.loads(body))
        if "bytes" in request.query_params:  # a large body with a Content-Length
            size = int(request.query_params["bytes"])
            return Response(pattern(size), media_type="application/octet-stream")
        if "chunked" in request.query_params:  # a large body without one
            size = int(request.query_params["chunked"])

            async def pieces() -> AsyncIterator[bytes]:
                data = pattern(size)
                for i in range(0, size, 10_000):
                    yield data[i : i + 10_000]

            return StreamingResponse(pieces(), media_type="application/octet-stream")
        response = JSONResponse(
            record,
            status_code=int(request.query_params.get("status", 200)),
            headers={"X-Upstream": name},
        )
        response.raw_headers += [(b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")]
        return response

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(JWKS_PATH)
    async def jwks() -> dict[str, Any]:
        upstream.jwks_fetches += 1
        return upstream.jwks

    @app.get(f"/api/v1/{name}/echo-model/{{item_id}}", response_model=echo_model)
    async def echo_model_route(item_id: str) -> dict[str, str]:
        return {f"{name}_field": item_id}

    @app.get(f"/internal/{name}/status")
    async def internal() -> dict[str, str]:
        return {"status": "ok"}

    if name == "auth":
        app.add_api_route("/api/v1/auth/register", echo, methods=["POST"])

        def check_internal(request: Request) -> None:
            upstream.internal_calls.append(dict(request.headers))
            verify_internal_call(
                dev_secret("identity-signing").get_secret_value(),
                method=request.method,
                path=request.url.path,
                header=request.headers.get("x-runyard-internal-signature", ""),
            )

        @app.post("/internal/v1/api-keys/verify")
        async def verify_key(request: Request) -> JSONResponse:
            check_internal(request)
            key = (await request.json())["key"]
            if key not in upstream.api_keys:
                return JSONResponse({"title": "Unauthorized"}, status_code=401)
            return JSONResponse(upstream.api_keys[key])

        @app.get("/internal/v1/sessions/{sid}")
        async def session_state(sid: str, request: Request) -> JSONResponse:
            check_internal(request)
            state = {"active": True, "user_active": True, "role": "", "session_id": sid}
            return JSONResponse({**state, **upstream.sessions.get(sid, {})})

    served_paths = ("/api/v1/{path:path}", "/api/2.0/{path:path}", "/ajax-api/2.0/{path:path}")
    for served in (*served_paths, "/get-artifact", "/model-versions/get-artifact"):
        app.add_api_route(
            served,
            echo,
            methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
            include_in_schema=False,
        )
    return app


@contextlib.asynccontextmanager
async def running_upstream(
    name: str, jwks: dict[str, Any] | None = None, *, url: str = ""
) -> AsyncIterator[Upstream]:
    """An echo service; on ``url``'s port when given (to bring a stopped one back)."""
    upstream = Upstream(name=name, jwks=jwks or {"keys": []})
    port = int(url.rsplit(":", 1)[1]) if url else 0
    async with serve(echo_app(upstream), port) as base_url:
        upstream.url = base_url
        yield upstream


def unused_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
def signing_key() -> SigningKey:
    return SigningKey(kid="test-key-1")


@pytest.fixture
def impostor_key() -> SigningKey:
    """Same kid as the real key, different private key."""
    return SigningKey(kid="test-key-1")


@pytest.fixture
def rotated_key() -> SigningKey:
    return SigningKey(kid="test-key-2")


@pytest.fixture
async def auth_upstream(signing_key: SigningKey) -> AsyncIterator[Upstream]:
    async with running_upstream("auth", {"keys": [signing_key.jwk()]}) as upstream:
        yield upstream


@pytest.fixture
async def experiments_upstream() -> AsyncIterator[Upstream]:
    async with running_upstream("experiments") as upstream:
        yield upstream


@pytest.fixture
async def notifications_upstream() -> AsyncIterator[Upstream]:
    async with running_upstream("notifications") as upstream:
        yield upstream


@pytest.fixture
async def db(make_service_database: Any) -> ServiceDatabase:
    database: ServiceDatabase = await make_service_database("runyard.gateway", "gateway")
    return database


@pytest.fixture
def settings(
    db: ServiceDatabase,
    kafka_bootstrap: str,
    auth_upstream: Upstream,
    experiments_upstream: Upstream,
    notifications_upstream: Upstream,
) -> Settings:
    """Webhooks is down: nothing listens on its URL."""
    return Settings(
        environment="test",
        request_log_flush_interval_s=0.05,
        database_url=db.url,
        kafka_bootstrap_servers=kafka_bootstrap,
        run_workers=False,
        auth_url=auth_upstream.url,
        experiments_url=experiments_upstream.url,
        notifications_url=notifications_upstream.url,
        webhooks_url=unused_url(),
    )


GatewayFactory = Callable[..., contextlib.AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def start_gateway(settings: Settings) -> GatewayFactory:
    """``async with start_gateway(**setting_overrides) as client`` -> a gateway on real HTTP.
    Its metrics listener is at ``client.metrics_url`` (not on the API port)."""

    @contextlib.asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
        # port 0: the listener binds a free port itself (a port picked here and bound later
        # could be taken by another test worker in between)
        overrides.setdefault("metrics_port", 0)
        app = create_app(settings.model_copy(update=overrides))
        async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
            port = app.state.runtime.context.metrics.port
            client.metrics_url = f"http://127.0.0.1:{port}/metrics"
            yield client

    return start


@pytest.fixture
async def client(start_gateway: GatewayFactory) -> AsyncIterator[httpx.AsyncClient]:
    async with start_gateway() as c:
        yield c


@pytest.fixture
async def db_conn(db: ServiceDatabase) -> AsyncIterator[asyncpg.Connection]:
    """A superuser connection to the gateway's test database, to look at what was written."""
    conn = await asyncpg.connect(asyncpg_dsn(db.admin_url))
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
def eventually() -> Callable[..., Any]:
    """``await eventually(predicate)``: poll until it returns something truthy (20 s at most)."""
    return _eventually


@pytest.fixture
def upstream_factory() -> Callable[..., contextlib.AbstractAsyncContextManager[Upstream]]:
    """``async with upstream_factory(name, url=...)``: an echo service (on ``url``'s port)."""
    return running_upstream


@pytest.fixture
def body_pattern() -> Callable[[int], bytes]:
    return pattern
