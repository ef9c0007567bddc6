"""Who is calling: bearer JWTs (EdDSA) verified against the auth service's JWKS, whose session
must still be live, or API keys verified by the auth service (see credentials.py).

An API key comes as ``X-API-Key`` or as ``Authorization: Bearer ry_...`` (on every path: that
is how the MLflow client sends ``MLFLOW_TRACKING_TOKEN``, and no JWT starts with ``ry_``).
On MLflow's paths only, ``Authorization: Basic`` (``MLFLOW_TRACKING_USERNAME``/``PASSWORD``)
is checked at auth like a login (credentials.py, ADR 0021); the access token auth answers, on
the user's one Basic session, then counts like a bearer token.

Public routes pass without credentials; everything else needs one.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import jwt
from fastapi import Request

from runyard.gateway.config import JWKS_PATH, Settings
from runyard.gateway.credentials import CredentialChecker, key_allows, required_scope
from runyard.gateway.errors import (
    InsufficientScope,
    InvalidApiKey,
    InvalidPassword,
    TokensUnverifiable,
    Unauthorized,
)
from runyard.shared.identity import Principal, Role
from runyard.shared.logging import get_logger

log = get_logger(__name__)

PUBLIC_ROUTES: frozenset[tuple[str, str]] = frozenset(
    {
        ("POST", "/api/v1/auth/register"),
        ("POST", "/api/v1/auth/login"),
        ("POST", "/api/v1/auth/refresh"),
        ("POST", "/api/v1/auth/password-reset"),
        ("POST", "/api/v1/auth/password-reset/confirm"),
        ("POST", "/api/v1/auth/verify-email"),
        ("GET", JWKS_PATH),
        ("HEAD", JWKS_PATH),
        ("GET", "/api/v1/notifications/unsubscribe"),
        ("POST", "/api/v1/notifications/unsubscribe"),
    }
)
#: Public routes limited per client IP (per /64 for IPv6): credential and token guessing,
#: sign-up and reset-mail floods.
IP_LIMITED_ROUTES: frozenset[tuple[str, str]] = frozenset(
    {
        ("POST", "/api/v1/auth/register"),
        ("POST", "/api/v1/auth/login"),
        ("POST", "/api/v1/auth/refresh"),
        ("POST", "/api/v1/auth/password-reset"),
        ("POST", "/api/v1/auth/password-reset/confirm"),
        ("POST", "/api/v1/auth/verify-email"),
    }
)

ROLES: tuple[Role, ...] = ("admin", "user", "viewer")
ALGORITHM = "EdDSA"
#: Every Runyard API key starts so (auth's ``tokens.API_KEY_PREFIX``); no JWT does.
API_KEY_PREFIX = "ry_"
#: ``Principal.auth_method`` of a request that came with Basic credentials.
PASSWORD_METHOD = "password"


def as_role(value: object) -> Role | None:
    """``value`` if it names a role, else None."""
    return next((role for role in ROLES if role == value), None)


def is_public(method: str, path: str) -> bool:
    return (method.upper(), path) in PUBLIC_ROUTES


class JwksUnavailableError(Exception):
    """The key set could not be fetched, so no token can be checked right now."""


Fetch = Callable[[], Awaitable[dict[str, Any]]]


class JwksCache:
    """Public keys by ``kid``. An unknown kid refetches the set, at most once per interval."""

    def __init__(self, fetch: Fetch, *, min_refresh_interval_s: float, max_age_s: float) -> None:
        self._fetch = fetch
        self._min_interval = min_refresh_interval_s
        self._max_age = max_age_s
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._last_attempt_failed = False
        self._lock = asyncio.Lock()

    def _stale(self, now: float) -> bool:
        return self._fetched_at is None or now - self._fetched_at >= self._max_age

    async def key(self, kid: str) -> jwt.PyJWK | None:
        if kid in self._keys and not self._stale(time.monotonic()):
            return self._keys[kid]
        async with self._lock:
            now = time.monotonic()
            if kid in self._keys and not self._stale(now):
                return self._keys[kid]
            recently = (
                self._attempted_at is not None and now - self._attempted_at < self._min_interval
            )
            if recently:
                if self._last_attempt_failed and not self._keys:
                    raise JwksUnavailableError("signing keys unavailable")
                return self._keys.get(kid)
            await self._refresh(now)
            return self._keys.get(kid)

    async def _refresh(self, now: float) -> None:
        self._attempted_at = now
        try:
            document = await self._fetch()
        except Exception as exc:
            self._last_attempt_failed = True
            log.warning("gateway.jwks.fetch_failed", error=repr(exc), cached_keys=len(self._keys))
            if not self._keys:
                raise JwksUnavailableError("signing keys unavailable") from exc
            return  # keep serving the keys we have
        self._last_attempt_failed = False
        self._keys = parse_jwks(document)
        self._fetched_at = now
        log.info("gateway.jwks.refreshed", kids=sorted(self._keys))


def parse_jwks(document: dict[str, Any]) -> dict[str, jwt.PyJWK]:
    keys: dict[str, jwt.PyJWK] = {}
    for raw in document.get("keys", []):
        if not isinstance(raw, dict) or not raw.get("kid") or raw.get("use", "sig") != "sig":
            continue
        try:
            key = jwt.PyJWK(raw)
        except jwt.PyJWTError:
            continue
        if key.algorithm_name == ALGORITHM:
            keys[str(raw["kid"])] = key
    return keys


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization")
    if not header:
        raise Unauthorized("A bearer token or an X-API-Key is required.", invalid=False)
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("The Authorization header must be 'Bearer <token>'.", invalid=True)
    return token


def presented_api_key(request: Request) -> str | None:
    """The API key the request is identified by: ``X-API-Key`` when there is no
    ``Authorization``, or ``Authorization: Bearer ry_...``; else None."""
    header = request.headers.get("authorization")
    if not header:
        return request.headers.get("x-api-key") or None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() == "bearer" and token.startswith(API_KEY_PREFIX):
        return token
    return None


def basic_credentials(request: Request) -> tuple[str, str] | None:
    """(login, password) of ``Authorization: Basic``, None for another scheme, 401 if
    malformed (RFC 7617: base64 of ``login:password``; UTF-8, else Latin-1)."""
    header = request.headers.get("authorization") or ""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        raw = base64.b64decode(encoded.strip(), validate=True)
    except binascii.Error as exc:
        raise Unauthorized(
            "The Authorization header must be 'Basic base64(username:password)'.", invalid=True
        ) from exc
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:  # python-requests (the MLflow client) encodes str as Latin-1
        decoded = raw.decode("latin-1")
    login, colon, password = decoded.partition(":")
    if not colon or not login or not password:
        raise InvalidPassword()
    return login, password


async def authenticate(
    request: Request,
    jwks: JwksCache,
    settings: Settings,
    checker: CredentialChecker,
    *,
    service: str,
    verified: VerifiedTokens | None = None,
    basic: bool = False,
    client_ip: str = "",
    before_login: Callable[[], None] | None = None,
) -> Principal:
    """The caller of a protected route, or 401/403 problem+json (503 if it cannot be checked).
    ``basic``: Basic credentials are accepted (MLflow paths); ``before_login`` is called before
    each login they cause (not for cached ones), ``client_ip`` is who logs in."""
    api_key = presented_api_key(request)
    if api_key is not None:
        return await authenticate_api_key(request, checker, api_key, service=service)
    if basic and (credentials := basic_credentials(request)) is not None:
        return await authenticate_password(
            request,
            jwks,
            settings,
            checker,
            credentials,
            client_ip=client_ip,
            verified=verified,
            before_login=before_login,
        )
    token_principal, sid = await verify_access_token(request, jwks, settings, verified)
    principal = await live_session(checker, token_principal, sid)
    if principal is None:
        raise Unauthorized("The session has ended; log in again.", invalid=True)
    request.state.principal = principal
    return principal


async def live_session(
    checker: CredentialChecker, principal: Principal, sid: str
) -> Principal | None:
    """``principal`` with its current role when its session is live, else None."""
    session = await checker.session(sid)
    if session is None or not session.active or not session.user_active:
        return None
    role = as_role(session.role)
    if role is not None and role != principal.role:
        # the role changed since the token was issued: the current one counts
        principal = replace(principal, role=role)
    if principal.session_id != sid:
        principal = replace(principal, session_id=sid)
    return principal


async def authenticate_password(
    request: Request,
    jwks: JwksCache,
    settings: Settings,
    checker: CredentialChecker,
    credentials: tuple[str, str],
    *,
    client_ip: str,
    verified: VerifiedTokens | None = None,
    before_login: Callable[[], None] | None = None,
) -> Principal:
    """Basic credentials: the access token auth answers for them (cached, credentials.py),
    verified like any bearer token, its session checked on every request. A cached token
    whose session has ended (logout, password change, revoked) or that no longer verifies is
    dropped and the credentials checked once more: the password still decides, and an ended
    session is never reused (auth starts a new one)."""
    login, password = credentials
    request_id = request.scope.get("state", {}).get("request_id")
    for attempt in range(2):
        token = await checker.password_login(
            login,
            password,
            client_ip=client_ip,
            user_agent=request.headers.get("user-agent"),
            request_id=request_id,
            before_login=before_login,
        )
        try:
            principal, sid = await verify_token(token, jwks, settings, verified)
        except Unauthorized:  # e.g. signed with a key auth has withdrawn since
            checker.forget_login(login, password)
            if attempt:
                raise
            continue
        live = await live_session(checker, principal, sid)
        if live is not None:
            principal = replace(live, auth_method=PASSWORD_METHOD)
            request.state.principal = principal
            return principal
        checker.forget_login(login, password)
    raise Unauthorized("The session has ended; log in again.", invalid=True)


async def authenticate_api_key(
    request: Request, checker: CredentialChecker, key: str, *, service: str
) -> Principal:
    grant = await checker.api_key(key.strip())
    role = as_role(grant.role) if grant is not None else None
    if grant is None or role is None:
        raise InvalidApiKey()
    principal = Principal(
        user_id=uuid.UUID(grant.user_id),
        role=role,
        username=grant.username,
        auth_method="api_key",
        api_key_id=grant.key_id,
    )
    request.state.principal = principal  # the request log and audit trail name the key's owner
    request.state.api_key_rate_limit = grant.rate_limit
    scope = required_scope(service, request.method, request.url.path)
    if not key_allows(grant, scope):
        raise InsufficientScope(scope)
    return principal


class VerifiedTokens:
    """Tokens whose signature and claims were checked, for a short while: a client sends the
    same token with every request, and the EdDSA check is the costliest step of a request.
    An entry lives until the token expires but at most ``ttl_s`` (so a signing key that auth
    withdrew stops counting soon after the JWKS is refetched)."""

    def __init__(self, *, ttl_s: float = 60.0, max_entries: int = 10_000) -> None:
        self._ttl = ttl_s
        self._max = max_entries
        self._entries: dict[str, tuple[float, Principal, str]] = {}

    def get(self, token: str) -> tuple[Principal, str] | None:
        entry = self._entries.get(token)
        if entry is None:
            return None
        if entry[0] <= time.time():
            del self._entries[token]
            return None
        return entry[1], entry[2]

    def put(self, token: str, principal: Principal, sid: str, *, exp: float) -> None:
        if len(self._entries) >= self._max:
            for old in list(self._entries)[: self._max // 10]:
                del self._entries[old]
        self._entries[token] = (min(exp, time.time() + self._ttl), principal, sid)


async def verify_access_token(
    request: Request, jwks: JwksCache, settings: Settings, verified: VerifiedTokens | None = None
) -> tuple[Principal, str]:
    """The token's principal (its ``session_id`` set) and session id, or 401 (503 if keys
    cannot be fetched). Whether the session is still live is the caller's check (every
    request, ``authenticate``), also for a token found in ``verified``."""
    return await verify_token(bearer_token(request), jwks, settings, verified)


async def verify_token(
    token: str, jwks: JwksCache, settings: Settings, verified: VerifiedTokens | None = None
) -> tuple[Principal, str]:
    """``verify_access_token`` of a token in hand (one a Basic login answered)."""
    if verified is not None and (known := verified.get(token)) is not None:
        return known
    invalid = Unauthorized("The access token is invalid or expired.", invalid=True)
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise invalid from exc
    kid = header.get("kid")
    if header.get("alg") != ALGORITHM or not isinstance(kid, str) or not kid:
        raise invalid
    try:
        key = await jwks.key(kid)
    except JwksUnavailableError as exc:
        raise TokensUnverifiable() from exc
    if key is None:
        raise invalid
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            leeway=settings.jwt_leeway_s,
            options={"require": ["exp", "iss", "aud", "sub"]},
        )
    except jwt.PyJWTError as exc:
        log.info("gateway.auth.rejected", reason=type(exc).__name__)
        raise invalid from exc
    role = as_role(claims.get("role"))
    sid = claims.get("sid")
    if claims.get("typ") != "access" or role is None or not isinstance(sid, str) or not sid:
        raise invalid
    try:
        user_id = uuid.UUID(str(claims["sub"]))
    except ValueError as exc:
        raise invalid from exc
    principal = Principal(
        user_id=user_id,
        role=role,
        username=str(claims.get("preferred_username") or ""),
        auth_method="jwt",
        session_id=sid,
    )
    if verified is not None:
        verified.put(token, principal, sid, exp=float(claims["exp"]))
    return principal, sid
