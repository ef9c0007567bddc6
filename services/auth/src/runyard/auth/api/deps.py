"""What the auth API's routes depend on: the client, the caller, their session, their rights."""

from __future__ import annotations

import ipaddress
import uuid
from typing import Annotated, Any

from fastapi import Depends, Request

from runyard.auth import errors
from runyard.auth.callers import Caller, ClientInfo
from runyard.auth.context import AuthRuntimeDep
from runyard.shared.http import PROBLEM_JSON
from runyard.shared.identity import CurrentPrincipal, Principal, verified_client_address

USER_AGENT_MAX = 512
API_KEY_METHOD = "api_key"

#: ``responses`` entry content of a problem+json answer, for the OpenAPI document.
PROBLEM: dict[str, Any] = {"content": {PROBLEM_JSON: {"schema": {"type": "object"}}}}


def _valid_ip(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


async def client_info(request: Request, runtime: AuthRuntimeDep) -> ClientInfo:
    """The client address the gateway signed (``X-Runyard-Client-Address``), else the TCP peer.

    Never ``X-Forwarded-For``: whatever reaches auth without the gateway could write any address
    there and rotate it past the per-client limits."""
    signed = verified_client_address(
        runtime.settings.identity_secret.get_secret_value(),
        {k.lower(): v for k, v in request.headers.items()},
    )
    ip = _valid_ip(signed)
    if ip is None and request.client is not None:
        ip = _valid_ip(request.client.host)
    user_agent = request.headers.get("user-agent")
    return ClientInfo(ip_address=ip, user_agent=user_agent[:USER_AGENT_MAX] if user_agent else None)


ClientDep = Annotated[ClientInfo, Depends(client_info)]


async def current_session_id(principal: CurrentPrincipal) -> uuid.UUID | None:
    """The caller's login session (the token's ``sid``, signed into the forwarded identity by the
    gateway). Lets "revoke my other sessions" keep the caller's own."""
    try:
        return uuid.UUID(principal.session_id) if principal.session_id else None
    except ValueError:
        return None


CurrentSessionDep = Annotated[uuid.UUID | None, Depends(current_session_id)]


async def interactive(principal: CurrentPrincipal) -> Principal:
    """Account security (password, 2FA, sessions, keys) is not for API keys: only a login."""
    if principal.auth_method == API_KEY_METHOD:
        raise errors.LoginRequired()
    return principal


InteractivePrincipal = Annotated[Principal, Depends(interactive)]


async def own_account(
    principal: InteractivePrincipal, client: ClientDep, current: CurrentSessionDep
) -> Caller:
    """A logged-in user about to change their own account."""
    return Caller(user_id=principal.user_id, client=client, session_id=current)


CallerDep = Annotated[Caller, Depends(own_account)]


async def admin(principal: CurrentPrincipal) -> Principal:
    if not principal.is_admin:
        raise errors.AdminsOnly()
    return principal


AdminPrincipal = Annotated[Principal, Depends(admin)]
