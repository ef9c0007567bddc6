"""The caller's identity as forwarded by the gateway, signed so that it cannot be forged.

The gateway authenticates every request (JWT or API key), strips any client-sent ``X-Runyard-*``
headers and sets the identity headers below plus ``X-Runyard-Signature: t=<unix>,v1=<hex>``, an
HMAC-SHA256 over the timestamp and the identity (incl. the session id) with the shared
``IDENTITY_SECRET`` (every service's ``<PREFIX>IDENTITY_SECRET``). A service accepts an identity
only with a valid signature no older than ``MAX_SIGNATURE_AGE_S``: a request that bypasses the
gateway is nobody.

On every forwarded request, public routes included, the gateway also signs the client address it
resolved (``X-Runyard-Client-Address`` and ``X-Runyard-Client-Signature``, same secret, same
maximum age): services take the client from there, never from ``X-Forwarded-For``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, Request

from runyard.shared.http import ProblemError

USER_ID_HEADER = "X-Runyard-User-Id"
USER_ROLE_HEADER = "X-Runyard-User-Role"
USERNAME_HEADER = "X-Runyard-Username"
AUTH_METHOD_HEADER = "X-Runyard-Auth-Method"
API_KEY_ID_HEADER = "X-Runyard-Api-Key-Id"
SESSION_ID_HEADER = "X-Runyard-Session-Id"
SIGNATURE_HEADER = "X-Runyard-Signature"
IDENTITY_HEADERS = (
    USER_ID_HEADER,
    USER_ROLE_HEADER,
    USERNAME_HEADER,
    AUTH_METHOD_HEADER,
    API_KEY_ID_HEADER,
    SESSION_ID_HEADER,
    SIGNATURE_HEADER,
)
MAX_SIGNATURE_AGE_S = 300

Role = Literal["admin", "user", "viewer"]


@dataclass(frozen=True)
class Principal:
    user_id: uuid.UUID
    role: Role
    username: str = ""
    auth_method: str = "jwt"
    api_key_id: str = ""
    #: the login session behind a bearer token (its ``sid``); empty for API keys
    session_id: str = ""

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def _mac(secret: str, timestamp: int, fields: tuple[str, ...]) -> str:
    message = "\n".join((str(timestamp), *fields)).encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _fields(*values: str) -> tuple[str, ...]:
    """user id, role, username, auth method, API key id, session id: the signed identity."""
    return values


def signed_identity_headers(
    secret: str, principal: Principal, *, now: float | None = None
) -> list[tuple[str, str]]:
    """The headers the gateway sets for an authenticated caller."""
    timestamp = int(time.time() if now is None else now)
    fields = _fields(
        str(principal.user_id),
        principal.role,
        principal.username,
        principal.auth_method,
        principal.api_key_id,
        principal.session_id,
    )
    return [
        (USER_ID_HEADER, fields[0]),
        (USER_ROLE_HEADER, fields[1]),
        (USERNAME_HEADER, fields[2]),
        (AUTH_METHOD_HEADER, fields[3]),
        (API_KEY_ID_HEADER, fields[4]),
        (SESSION_ID_HEADER, fields[5]),
        (SIGNATURE_HEADER, f"t={timestamp},v1={_mac(secret, timestamp, fields)}"),
    ]


def _unauthorized(detail: str) -> ProblemError:
    return ProblemError(401, "Unauthorized", detail)


def verify_identity(secret: str, headers: dict[str, str], *, now: float | None = None) -> Principal:
    raw_id = headers.get(USER_ID_HEADER.lower())
    if not raw_id:
        raise _unauthorized("Authentication required.")
    signature = headers.get(SIGNATURE_HEADER.lower(), "")
    parts = dict(p.split("=", 1) for p in signature.split(",") if "=" in p)
    fields = _fields(
        raw_id,
        headers.get(USER_ROLE_HEADER.lower(), ""),
        headers.get(USERNAME_HEADER.lower(), ""),
        headers.get(AUTH_METHOD_HEADER.lower(), ""),
        headers.get(API_KEY_ID_HEADER.lower(), ""),
        headers.get(SESSION_ID_HEADER.lower(), ""),
    )
    try:
        timestamp = int(parts.get("t", ""))
    except ValueError:
        raise _unauthorized("Identity not signed by the gateway.") from None
    expected = _mac(secret, timestamp, fields)
    if not hmac.compare_digest(expected, parts.get("v1", "")):
        raise _unauthorized("Identity not signed by the gateway.")
    if abs((time.time() if now is None else now) - timestamp) > MAX_SIGNATURE_AGE_S:
        raise _unauthorized("Identity signature expired.")
    try:
        user_id = uuid.UUID(raw_id)
    except ValueError:
        raise _unauthorized("Malformed identity.") from None
    role = fields[1]
    if role not in ("admin", "user", "viewer"):
        raise _unauthorized("Malformed identity.")
    return Principal(
        user_id=user_id,
        role=role,  # type: ignore[arg-type]
        username=fields[2],
        auth_method=fields[3] or "jwt",
        api_key_id=fields[4],
        session_id=fields[5],
    )


INTERNAL_SIGNATURE_HEADER = "X-Runyard-Internal-Signature"


def _internal_mac(secret: str, *, method: str, path: str, timestamp: int) -> str:
    message = f"runyard-internal\n{timestamp}\n{method.upper()}\n{path}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def internal_call_headers(
    secret: str, *, method: str, path: str, now: float | None = None
) -> dict[str, str]:
    """What the gateway sends with a call to a service's ``/internal/v1/...`` endpoint."""
    timestamp = int(time.time() if now is None else now)
    mac = _internal_mac(secret, method=method, path=path, timestamp=timestamp)
    return {INTERNAL_SIGNATURE_HEADER: f"t={timestamp},v1={mac}"}


def verify_internal_call(secret: str, *, method: str, path: str, header: str) -> None:
    """Raise 401 unless ``header`` is a fresh gateway signature for this method and path."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts.get("t", ""))
    except ValueError:
        raise _unauthorized("Internal call not signed.") from None
    expected = _internal_mac(secret, method=method, path=path, timestamp=timestamp)
    if not hmac.compare_digest(expected, parts.get("v1", "")):
        raise _unauthorized("Internal call not signed.")
    if abs(time.time() - timestamp) > MAX_SIGNATURE_AGE_S:
        raise _unauthorized("Internal call signature expired.")


# --- the client's address ---------------------------------------------------------------------

CLIENT_ADDRESS_HEADER = "X-Runyard-Client-Address"
CLIENT_SIGNATURE_HEADER = "X-Runyard-Client-Signature"


def _client_mac(secret: str, *, address: str, timestamp: int) -> str:
    message = f"runyard-client\n{timestamp}\n{address}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signed_client_headers(
    secret: str, address: str, *, now: float | None = None
) -> list[tuple[str, str]]:
    """What the gateway sets on every forwarded request, public routes included: the client
    address it resolved (the TCP peer, or the right-most untrusted ``X-Forwarded-For`` hop
    behind a trusted proxy), signed like the identity."""
    timestamp = int(time.time() if now is None else now)
    mac = _client_mac(secret, address=address, timestamp=timestamp)
    return [
        (CLIENT_ADDRESS_HEADER, address),
        (CLIENT_SIGNATURE_HEADER, f"t={timestamp},v1={mac}"),
    ]


def verified_client_address(
    secret: str, headers: Mapping[str, str], *, now: float | None = None
) -> str | None:
    """The client address the gateway signed for this request; None when there is none, or it
    is forged or stale. Never ``X-Forwarded-For``: anything that reaches a service directly can
    write that."""
    address = headers.get(CLIENT_ADDRESS_HEADER.lower(), "")
    signature = headers.get(CLIENT_SIGNATURE_HEADER.lower(), "")
    if not address or not signature:
        return None
    parts = dict(p.split("=", 1) for p in signature.split(",") if "=" in p)
    try:
        timestamp = int(parts.get("t", ""))
    except ValueError:
        return None
    expected = _client_mac(secret, address=address, timestamp=timestamp)
    if not hmac.compare_digest(expected, parts.get("v1", "")):
        return None
    if abs((time.time() if now is None else now) - timestamp) > MAX_SIGNATURE_AGE_S:
        return None
    return address


#: IPv6 clients are limited per /64: one subscriber usually holds a whole /64 and can rotate
#: through its addresses at will.
IPV6_CLIENT_PREFIX = 64


def client_network(address: str) -> str:
    """The key per-client limits count by: an IPv4 address as it is, an IPv6 address as its /64
    (``2001:db8:1:2::/64``), an IPv4-mapped IPv6 address as the IPv4 address. Anything that is
    not an address is returned unchanged."""
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_CLIENT_PREFIX), strict=False))
    return str(ip)


async def principal_from_request(request: Request) -> Principal:
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is None:  # no settings, no secret: fail closed
        raise _unauthorized("Authentication required.")
    secret: str = runtime.settings.identity_secret.get_secret_value()
    return verify_identity(secret, {k.lower(): v for k, v in request.headers.items()})


CurrentPrincipal = Annotated[Principal, Depends(principal_from_request)]


def require_writer(principal: Principal) -> Principal:
    if principal.role == "viewer":
        raise ProblemError(403, "Forbidden", "Viewers have read-only access.")
    return principal
