"""The caller's identity as forwarded by the gateway.

The gateway authenticates every request (JWT or API key), strips any client-sent ``X-Runyard-*``
headers and sets these. Services listen on the internal network only and trust them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, Request

from runyard.shared.http import ProblemError

USER_ID_HEADER = "X-Runyard-User-Id"
USER_ROLE_HEADER = "X-Runyard-User-Role"
USERNAME_HEADER = "X-Runyard-Username"
AUTH_METHOD_HEADER = "X-Runyard-Auth-Method"
API_KEY_ID_HEADER = "X-Runyard-Api-Key-Id"
IDENTITY_HEADERS = (
    USER_ID_HEADER,
    USER_ROLE_HEADER,
    USERNAME_HEADER,
    AUTH_METHOD_HEADER,
    API_KEY_ID_HEADER,
)

Role = Literal["admin", "user", "viewer"]


@dataclass(frozen=True)
class Principal:
    user_id: uuid.UUID
    role: Role
    username: str = ""
    auth_method: str = "jwt"

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def principal_from_request(request: Request) -> Principal:
    raw_id = request.headers.get(USER_ID_HEADER)
    role = request.headers.get(USER_ROLE_HEADER, "user")
    if not raw_id:
        raise ProblemError(401, "Unauthorized", "Authentication required.")
    try:
        user_id = uuid.UUID(raw_id)
    except ValueError as exc:
        raise ProblemError(401, "Unauthorized", "Malformed identity.") from exc
    if role not in ("admin", "user", "viewer"):
        raise ProblemError(401, "Unauthorized", "Malformed identity.")
    return Principal(
        user_id=user_id,
        role=role,  # type: ignore[arg-type]
        username=request.headers.get(USERNAME_HEADER, ""),
        auth_method=request.headers.get(AUTH_METHOD_HEADER, "jwt"),
    )


CurrentPrincipal = Annotated[Principal, Depends(principal_from_request)]


def require_writer(principal: Principal) -> Principal:
    if principal.role == "viewer":
        raise ProblemError(403, "Forbidden", "Viewers have read-only access.")
    return principal
