"""The console's one door to Runyard: the public API at the gateway, as any client uses it.

``Gateway`` holds the pooled HTTP client; ``UserApi`` makes one browser request's calls with the
user's access token, renewing it once (``auth_client.refresh``) when it is about to expire or
the API answers 401. Refresh tokens rotate and a reused one ends the session, so renewals of one
token are serialised in this process and their result is reused for a short while by requests
that raced with it (a page, its chart reads and its event stream arrive together).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from typing import Any

import httpx
from fastapi import Request

from runyard.console import auth_client
from runyard.console.session import Session

#: renew the access token when it expires sooner than this
RENEW_MARGIN_S = 30.0
#: a renewal's result is reused this long by requests that carried the same refresh token
RENEWAL_REUSE_S = 60.0


class SessionExpired(Exception):
    """The user's session is over (signed out elsewhere, revoked, expired): sign in again."""


class ApiProblem(Exception):
    """A 4xx/5xx answer of the API, with its problem+json document."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        super().__init__(problem.get("detail") or problem.get("title") or str(status))
        self.status = status
        self.problem = problem


def problem_of(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        return body
    return {"title": response.reason_phrase or "Error", "status": response.status_code}


class Gateway:
    def __init__(self, base_url: str, *, timeout_s: float) -> None:
        self.http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=timeout_s,
            trust_env=False,
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        )
        self._locks: dict[str, asyncio.Lock] = {}
        self._renewed: OrderedDict[str, tuple[float, auth_client.Tokens]] = OrderedDict()

    async def close(self) -> None:
        await self.http.aclose()

    async def renew(self, refresh_token: str, headers: dict[str, str]) -> auth_client.Tokens:
        key = hashlib.sha256(refresh_token.encode()).hexdigest()
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            self._forget_old()
            if key in self._renewed:
                return self._renewed[key][1]
            tokens = await auth_client.refresh(self.http, refresh_token, headers=headers)
            if tokens is None:
                raise SessionExpired
            self._renewed[key] = (time.monotonic(), tokens)
        self._locks.pop(key, None)
        return tokens

    def _forget_old(self) -> None:
        now = time.monotonic()
        while self._renewed and now - next(iter(self._renewed.values()))[0] > RENEWAL_REUSE_S:
            self._renewed.popitem(last=False)


def client_headers(request: Request) -> dict[str, str]:
    """What the API should know of the browser: the request id and the client's address (the
    gateway believes it only from a trusted proxy, ``GATEWAY_TRUSTED_PROXIES``)."""
    headers = {}
    if request_id := getattr(request.state, "request_id", None):
        headers["X-Request-ID"] = str(request_id)
    forwarded = request.headers.get("x-forwarded-for")
    client = forwarded.split(",")[-1].strip() if forwarded else None
    if client or request.client:
        headers["X-Forwarded-For"] = client or (request.client.host if request.client else "")
    if agent := request.headers.get("user-agent"):
        headers["User-Agent"] = agent[:512]
    return headers


class UserApi:
    """The API calls of one browser request, as the signed-in user."""

    def __init__(self, gateway: Gateway, request: Request, session: Session) -> None:
        self.gateway = gateway
        self.request = request
        self.session = session

    async def _renew(self) -> None:
        tokens = await self.gateway.renew(self.session.refresh_token, client_headers(self.request))
        self.session.access_token = tokens.access_token
        self.session.refresh_token = tokens.refresh_token
        self.session.access_expires_at = tokens.access_expires_at
        self.request.state.session_changed = self.session

    async def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The API's answer (any status but 401); SessionExpired when the session is over."""
        if self.session.access_expires_at - time.time() < RENEW_MARGIN_S:
            await self._renew()
        response = await self._send(method, path, **kwargs)
        if response.status_code == 401:
            await self._renew()
            response = await self._send(method, path, **kwargs)
            if response.status_code == 401:
                raise SessionExpired
        return response

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {
            **client_headers(self.request),
            "Authorization": f"Bearer {self.session.access_token}",
            **kwargs.pop("headers", {}),
        }
        return await self.gateway.http.request(method, f"/api/v1{path}", headers=headers, **kwargs)

    async def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """The decoded body of a 2xx answer; ApiProblem otherwise."""
        response = await self.send(method, path, **kwargs)
        if response.status_code >= 400:
            raise ApiProblem(response.status_code, problem_of(response))
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    async def get(self, path: str, **params: Any) -> Any:
        clean = {k: v for k, v in params.items() if v not in (None, "", [])}
        return await self.json("GET", path, params=clean)
