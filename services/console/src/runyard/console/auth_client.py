"""Every call the console makes to auth's public API, in one place (sign in with its two-factor
step, register, renew, sign out, who am I, and the signed-out account links: a forgotten
password, a reset link, a verification link), so changes to the auth API are adapted here."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx

TWO_FACTOR_REQUIRED = "two_factor_required"


@dataclass(frozen=True)
class Tokens:
    access_token: str
    refresh_token: str
    access_expires_at: float


@dataclass(frozen=True)
class LoginResult:
    tokens: Tokens | None = None
    #: the password was right and a TOTP or backup code is needed
    needs_code: bool = False
    #: why the API refused (its problem document), when it did
    problem: dict[str, Any] | None = None
    retry_after: str | None = None


def _tokens(body: dict[str, Any]) -> Tokens:
    return Tokens(
        access_token=str(body["access_token"]),
        refresh_token=str(body["refresh_token"]),
        access_expires_at=time.time() + float(body.get("expires_in", 900)),
    )


def _problem(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        return body
    return {"title": response.reason_phrase or "Error", "status": response.status_code}


async def login(
    http: httpx.AsyncClient,
    login: str,
    password: str,
    *,
    totp_code: str | None = None,
    headers: dict[str, str],
) -> LoginResult:
    body: dict[str, Any] = {"login": login, "password": password}
    if totp_code:
        body["totp_code"] = totp_code
    response = await http.post("/api/v1/auth/login", json=body, headers=headers)
    if response.status_code == 200:
        return LoginResult(tokens=_tokens(response.json()))
    problem = _problem(response)
    if response.status_code == 401 and problem.get("code") == TWO_FACTOR_REQUIRED:
        return LoginResult(needs_code=True, problem=problem)
    return LoginResult(problem=problem, retry_after=response.headers.get("retry-after"))


async def register(
    http: httpx.AsyncClient, *, username: str, email: str, password: str, headers: dict[str, str]
) -> dict[str, Any] | None:
    """None when the account was created, else the API's problem document."""
    response = await http.post(
        "/api/v1/auth/register",
        json={"username": username, "email": email, "password": password},
        headers=headers,
    )
    return None if response.status_code == 201 else _problem(response)


async def refresh(
    http: httpx.AsyncClient, refresh_token: str, *, headers: dict[str, str]
) -> Tokens | None:
    """A new token pair, or None when the refresh token is no longer good."""
    response = await http.post(
        "/api/v1/auth/refresh", json={"refresh_token": refresh_token}, headers=headers
    )
    if response.status_code != 200:
        return None
    return _tokens(response.json())


async def me(http: httpx.AsyncClient, access_token: str, *, headers: dict[str, str]) -> Any:
    response = await http.get(
        "/api/v1/auth/me", headers={**headers, "Authorization": f"Bearer {access_token}"}
    )
    response.raise_for_status()
    return response.json()


async def logout(
    http: httpx.AsyncClient, access_token: str, refresh_token: str, *, headers: dict[str, str]
) -> None:
    """Ends the session at auth; a session already over is fine."""
    await http.post(
        "/api/v1/auth/logout",
        json={"refresh_token": refresh_token},
        headers={**headers, "Authorization": f"Bearer {access_token}"},
    )


@dataclass(frozen=True)
class Answer:
    """The API's answer to a call that needs no login."""

    status: int
    #: the problem document, when it refused
    problem: dict[str, Any] | None = None
    retry_after: str | None = None

    @property
    def ok(self) -> bool:
        return self.status < 400


async def _public_post(
    http: httpx.AsyncClient, path: str, body: dict[str, Any], *, headers: dict[str, str]
) -> Answer:
    response = await http.post(f"/api/v1/auth/{path}", json=body, headers=headers)
    if response.status_code < 400:
        return Answer(response.status_code)
    return Answer(response.status_code, _problem(response), response.headers.get("retry-after"))


async def request_password_reset(
    http: httpx.AsyncClient, email: str, *, headers: dict[str, str]
) -> Answer:
    """202 for every address alike; 422 for something that is no address, 429 beyond the
    limits."""
    return await _public_post(http, "password-reset", {"email": email}, headers=headers)


async def confirm_password_reset(
    http: httpx.AsyncClient, token: str, password: str, *, headers: dict[str, str]
) -> Answer:
    """204: the password is set (every session and API key ended); 400: the link is unknown,
    used or expired; 422: the policy refuses the password (the link still works)."""
    body = {"token": token, "password": password}
    return await _public_post(http, "password-reset/confirm", body, headers=headers)


async def verify_email(http: httpx.AsyncClient, token: str, *, headers: dict[str, str]) -> Answer:
    """204: the address is verified (for an email change, the account has it now); 400: the
    link is unknown, used or expired; 409: another account holds the new address by now."""
    return await _public_post(http, "verify-email", {"token": token}, headers=headers)
