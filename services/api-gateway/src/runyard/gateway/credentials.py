"""What the gateway asks the auth service, cached for a few seconds.

- ``X-API-Key``: ``POST /internal/v1/api-keys/verify`` answers who the key acts for (user, role,
  scopes, rate limit, expiry) or 401. Answers, good and bad, are cached by the key's SHA-256 for
  ``API_KEY_CACHE_S``: a revoked key stops working within that many seconds.
- Basic credentials (MLflow paths only, auth.py): ``POST /internal/v1/basic-auth`` (ADR 0021),
  which judges them with the very steps of auth's login, so a wrong password is a failed login
  there (lockout, per-client limits, login history) and a locked, deactivated or two-factor
  account is refused. A passing check gets an access token on the user's one ``basic_auth``
  session (started when none is live), so a client that keeps sending its credentials adds no
  session per cache miss. The token is cached by an HMAC of the credentials under a key of this
  process (never the password) for ``BASIC_AUTH_CACHE_S`` at most (and never past the token's
  expiry); failures are never cached, each one counts.
- Bearer tokens: the ``sid`` claim is checked with ``GET /internal/v1/sessions/{sid}`` (cached for
  ``SESSION_CACHE_S``), so a logged-out or revoked session, or a deactivated user, is refused
  within seconds although the JWT itself is still valid.
Concurrent requests that miss the cache for the same key, session or credentials share one
call (a burst from one caller would otherwise ask auth once per request, and time out together).
The internal calls carry the internal signature (runyard.shared.identity.internal_call_headers).
If auth cannot be asked, the request is refused with 503: never fail open.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp

from runyard.gateway.errors import (
    AccountLockedOut,
    CredentialsUnavailable,
    InvalidPassword,
    SecondFactorRequired,
    TooManyFailedLogins,
)
from runyard.gateway.mlflow import is_mlflow_path, mlflow_reads
from runyard.shared.http import REQUEST_ID_HEADER
from runyard.shared.identity import internal_call_headers, signed_client_headers
from runyard.shared.logging import get_logger

log = get_logger(__name__)

API_KEYS_VERIFY_PATH = "/internal/v1/api-keys/verify"
SESSIONS_PATH = "/internal/v1/sessions/"
BASIC_AUTH_PATH = "/internal/v1/basic-auth"
#: A cached login's token is dropped this long before it expires (clock skew, slow requests).
TOKEN_EXPIRY_MARGIN_S = 30.0

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Area of the API -> the scope family an API key needs for it.
SCOPE_FAMILY = {
    "experiments": "experiments",
    "webhooks": "webhooks",
    "notifications": "notifications",
}


@dataclass(frozen=True)
class ApiKeyGrant:
    key_id: str
    user_id: str
    username: str
    role: str
    scopes: frozenset[str]
    rate_limit: int | None
    expires_at: datetime | None


@dataclass(frozen=True)
class SessionState:
    active: bool
    user_active: bool
    role: str


def required_scope(service: str, method: str, path: str) -> str:
    """The scope an API key needs for this request (``admin`` covers everything)."""
    if is_mlflow_path(path):  # MLflow's API is the experiments service's
        return f"experiments:{'read' if mlflow_reads(method, path) else 'write'}"
    family = SCOPE_FAMILY.get(service)
    if family is None:  # the auth area: only reading one's own account, else admin keys
        return "any" if (method, path) == ("GET", "/api/v1/auth/me") else "admin"
    return f"{family}:{'read' if method in READ_METHODS else 'write'}"


def key_allows(grant: ApiKeyGrant, scope: str) -> bool:
    return scope == "any" or "admin" in grant.scopes or scope in grant.scopes


class CredentialChecker:
    def __init__(
        self,
        http: aiohttp.ClientSession,
        *,
        auth_url: str,
        secret: str,
        api_key_cache_s: float,
        session_cache_s: float,
        timeout_s: float,
        basic_auth_cache_s: float = 300.0,
    ) -> None:
        self._http = http
        self._auth_url = auth_url.rstrip("/")
        self._secret = secret
        self._api_key_ttl = api_key_cache_s
        self._session_ttl = session_cache_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._keys: dict[str, tuple[float, ApiKeyGrant | None]] = {}
        self._sessions: dict[str, tuple[float, SessionState | None]] = {}
        self._login_ttl = basic_auth_cache_s
        #: HMAC of login and password -> (good until, access token); successes only
        self._logins: dict[str, tuple[float, str]] = {}
        #: the HMAC key: random per process, so a digest in memory is no offline password check
        self._login_key = secrets.token_bytes(32)
        #: lookups under way, by ("key", digest) or ("session", sid): later callers wait for it
        self._pending: dict[tuple[str, str], asyncio.Future[Any]] = {}

    async def _once(self, key: tuple[str, str], lookup: Callable[[], Awaitable[Any]]) -> Any:
        """``lookup()``, or the result of the same lookup another request started already.
        Shielded: a caller that goes away (client disconnect) does not cancel it for others."""
        pending = self._pending.get(key)
        if pending is None:
            pending = asyncio.ensure_future(lookup())
            self._pending[key] = pending
            pending.add_done_callback(lambda done: self._settled(key, done))
        return await asyncio.shield(pending)

    def _settled(self, key: tuple[str, str], done: asyncio.Future[Any]) -> None:
        if self._pending.get(key) is done:
            del self._pending[key]
        if not done.cancelled():
            done.exception()  # retrieved: every waiter may have gone away

    async def _call(self, method: str, path: str, json: Any = None) -> tuple[int, Any]:
        headers = internal_call_headers(self._secret, method=method, path=path)
        try:
            async with self._http.request(
                method, self._auth_url + path, json=json, headers=headers, timeout=self._timeout
            ) as response:
                body = await response.json(content_type=None) if response.status == 200 else None
                return response.status, body
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("gateway.credentials.unavailable", path=path, error=repr(exc))
            raise CredentialsUnavailable() from exc

    async def api_key(self, key: str) -> ApiKeyGrant | None:
        digest = hashlib.sha256(key.encode()).hexdigest()
        cached = self._keys.get(digest)
        if cached is None or cached[0] < time.monotonic():
            cached = await self._once(("key", digest), lambda: self._look_up_key(key, digest))
        grant = cached[1]
        if grant is not None and grant.expires_at is not None and grant.expires_at <= _utcnow():
            return None
        return grant

    async def _look_up_key(self, key: str, digest: str) -> tuple[float, ApiKeyGrant | None]:
        asked = time.monotonic()
        status, body = await self._call("POST", API_KEYS_VERIFY_PATH, {"key": key})
        if status == 200 and isinstance(body, dict):
            grant: ApiKeyGrant | None = ApiKeyGrant(
                key_id=str(body["key_id"]),
                user_id=str(body["user_id"]),
                username=str(body.get("username") or ""),
                role=str(body["role"]),
                scopes=frozenset(body.get("scopes") or ()),
                rate_limit=body.get("rate_limit"),
                expires_at=_parse_time(body.get("expires_at")),
            )
        elif status in (401, 404, 422):
            grant = None
        else:
            raise CredentialsUnavailable()
        entry = (asked + self._api_key_ttl, grant)
        self._remember(self._keys, digest, entry)
        return entry

    async def session(self, sid: str) -> SessionState | None:
        cached = self._sessions.get(sid)
        if cached is None or cached[0] < time.monotonic():
            cached = await self._once(("session", sid), lambda: self._look_up_session(sid))
        return cached[1]

    async def _look_up_session(self, sid: str) -> tuple[float, SessionState | None]:
        asked = time.monotonic()
        status, body = await self._call("GET", SESSIONS_PATH + sid)
        if status == 200 and isinstance(body, dict):
            state: SessionState | None = SessionState(
                active=bool(body.get("active")),
                user_active=bool(body.get("user_active")),
                role=str(body.get("role") or ""),
            )
        elif status in (404, 422):
            state = None
        else:
            raise CredentialsUnavailable()
        entry = (asked + self._session_ttl, state)
        self._remember(self._sessions, sid, entry)
        return entry

    def _login_digest(self, login: str, password: str) -> str:
        message = login.encode() + b"\0" + password.encode()
        return hmac.new(self._login_key, message, hashlib.sha256).hexdigest()

    async def password_login(
        self,
        login: str,
        password: str,
        *,
        client_ip: str,
        user_agent: str | None = None,
        request_id: str | None = None,
        before_login: Callable[[], None] | None = None,
    ) -> str:
        """An access token for ``login``/``password`` (Basic credentials): a cached one, else
        a login at auth (``before_login()`` first: it may refuse, e.g. the per-IP bucket).
        401/429 (``errors.py``) when auth refuses, 503 when it cannot be asked."""
        digest = self._login_digest(login, password)
        cached = self._logins.get(digest)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        if before_login is not None:
            before_login()
        token: str = await self._once(
            ("login", digest),
            lambda: self._log_in(login, password, digest, client_ip, user_agent, request_id),
        )
        return token

    def forget_login(self, login: str, password: str) -> None:
        """Drop the cached token of these credentials (its session ended)."""
        self._logins.pop(self._login_digest(login, password), None)

    async def _log_in(
        self,
        login: str,
        password: str,
        digest: str,
        client_ip: str,
        user_agent: str | None,
        request_id: str | None,
    ) -> str:
        asked = time.monotonic()
        headers = list(
            internal_call_headers(self._secret, method="POST", path=BASIC_AUTH_PATH).items()
        )
        # the client's address, signed as for a proxied login: auth's per-client limits and the
        # login history see the client, not the gateway
        if client_ip:
            headers += signed_client_headers(self._secret, client_ip)
        if user_agent:
            headers.append(("User-Agent", user_agent))
        if request_id:
            headers.append((REQUEST_ID_HEADER, request_id))
        try:
            async with self._http.post(
                self._auth_url + BASIC_AUTH_PATH,
                json={"login": login, "password": password},
                headers=headers,
                timeout=self._timeout,
            ) as response:
                status = response.status
                body = await response.json(content_type=None) if status != 204 else None
                retry_after = response.headers.get("Retry-After", "")
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("gateway.credentials.unavailable", path=BASIC_AUTH_PATH, error=repr(exc))
            raise CredentialsUnavailable() from exc
        wait = int(retry_after) if retry_after.isdigit() else 60
        code = body.get("code") if isinstance(body, dict) else None
        if status == 200 and isinstance(body, dict) and isinstance(body.get("access_token"), str):
            token: str = body["access_token"]
            expires_in = float(body.get("expires_in") or 0)
            ttl = min(self._login_ttl, expires_in - TOKEN_EXPIRY_MARGIN_S)
            if ttl > 0:
                self._remember(self._logins, digest, (asked + ttl, token))
            return token
        if status == 401 and code == "two_factor_required":
            raise SecondFactorRequired()
        # 401 without a code: auth refused the call's signature, no verdict on the credentials
        if (status == 401 and code == "invalid_credentials") or status == 422:
            raise InvalidPassword()  # 422: a login or password auth would never accept
        if status == 423:
            raise AccountLockedOut(retry_after_s=wait)
        if status == 429:
            raise TooManyFailedLogins(retry_after_s=wait)
        log.warning("gateway.credentials.login_failed", status=status)
        raise CredentialsUnavailable()

    @staticmethod
    def _remember(cache: dict[str, Any], key: str, value: Any, limit: int = 100_000) -> None:
        if len(cache) >= limit:  # bounded memory: drop the oldest entries
            for old in list(cache)[: limit // 10]:
                del cache[old]
        cache[key] = value


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _utcnow() -> datetime:
    return datetime.now(UTC)
