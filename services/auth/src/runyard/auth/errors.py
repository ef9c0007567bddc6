"""The auth service's domain errors, each with the status, title and detail clients see.

Most are raised (``ProblemError`` rolls the request's transaction back). A ``Refusal`` is
returned instead: it refuses a request whose side effects must still commit (the login
history row, the failure counters, the events), and the API renders it with ``problem``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from runyard.shared.http import ProblemError, problem_response


def problem(request: Request, error: ProblemError) -> JSONResponse:
    """``error`` as the problem+json response its raising would give."""
    return problem_response(
        request,
        status=error.status,
        title=error.title,
        detail=error.detail,
        type_=error.type,
        errors=error.errors,
        headers=error.headers or None,
        **error.extra,
    )


# --- not found --------------------------------------------------------------------------------


class NotFound(ProblemError):
    def __init__(self, detail: str) -> None:
        super().__init__(404, "Not Found", detail)


class NoSuchUser(NotFound):
    def __init__(self) -> None:
        super().__init__("No such user.")


class NoSuchSession(NotFound):
    def __init__(self) -> None:
        super().__init__("No such session.")


class NoSuchApiKey(NotFound):
    """Also for keys of others, so their ids leak nothing."""

    def __init__(self) -> None:
        super().__init__("No such API key.")


# --- forbidden --------------------------------------------------------------------------------


class Forbidden(ProblemError):
    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(403, "Forbidden", detail, **extra)


class AccountDeactivated(Forbidden):
    def __init__(self) -> None:
        super().__init__("This account is deactivated.")


class AdminsOnly(Forbidden):
    def __init__(self) -> None:
        super().__init__("Only admins may do this.")


class LoginRequired(Forbidden):
    """Account security (password, 2FA, sessions, keys) is not for API keys."""

    def __init__(self) -> None:
        super().__init__("Log in to manage your account; API keys cannot.")


class ReauthenticationRequired(Forbidden):
    """A sensitive change with nothing but the access token: a stolen token must not be enough."""

    def __init__(self, *, password: bool = True, code: bool = False) -> None:
        fields = [name for name, ok in (("current_password", password), ("code", code)) if ok]
        proofs = {
            "current_password": "your current password (current_password)",
            "code": "a code from your authenticator app or a backup code (code)",
        }
        what = ", or ".join(proofs[name] for name in fields)
        super().__init__(
            f"Confirm this change with {what}.",
            code="reauthentication_required",
            errors=[body_error(name, "Field required", "missing") for name in fields],
        )


class ScopesNotGrantable(Forbidden):
    """A key can never do more than its owner's role allows."""

    def __init__(self, role: str, denied: Sequence[str]) -> None:
        super().__init__(
            f"Your role ({role}) cannot grant: {', '.join(denied)}.", scopes=list(denied)
        )


# --- conflicts --------------------------------------------------------------------------------


class Conflict(ProblemError):
    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(409, "Conflict", detail, **extra)


class UsernameOrEmailTaken(Conflict):
    def __init__(self, fields: list[str]) -> None:
        taken = " and ".join(fields).capitalize() or "Username or email"
        super().__init__(f"{taken} already taken.", fields=fields)


class UsernameTaken(UsernameOrEmailTaken):
    """Registration names only a taken username: usernames are public, email addresses are not."""

    def __init__(self) -> None:
        super().__init__(["username"])


class EmailAlreadyVerified(Conflict):
    def __init__(self) -> None:
        super().__init__("Your email address is verified already.")


class EmailTaken(Conflict):
    def __init__(self) -> None:
        super().__init__("Email already taken.", fields=["email"])


class LastActiveAdmin(Conflict):
    def __init__(self) -> None:
        super().__init__("This would leave no active admin.", fields=["role", "is_active"])


class TwoFactorAlreadyEnabled(Conflict):
    def __init__(self) -> None:
        super().__init__("Two-factor authentication is already enabled.")


class TwoFactorNotEnabled(Conflict):
    def __init__(self) -> None:
        super().__init__("Two-factor authentication is not enabled.")


class TwoFactorNotSetUp(Conflict):
    def __init__(self) -> None:
        super().__init__("Call POST /api/v1/auth/2fa/setup first.")


# --- invalid input that the request schema cannot judge --------------------------------------


class InvalidInput(ProblemError):
    """422 like a request that does not match its schema, naming the body fields at fault."""

    def __init__(self, detail: str, errors: list[dict[str, Any]]) -> None:
        super().__init__(422, "Validation failed", detail, errors=errors)


def body_error(field: str, msg: str, type_: str) -> dict[str, Any]:
    return {"loc": ["body", field], "msg": msg, "type": type_}


class PasswordRefused(InvalidInput):
    def __init__(self, field: str, problems: list[str]) -> None:
        super().__init__(
            "The password is not acceptable.",
            [body_error(field, msg, "password_policy") for msg in problems],
        )


class RefreshTokenRequired(InvalidInput):
    def __init__(self) -> None:
        super().__init__(
            "Send the session's refresh_token.",
            [body_error("refresh_token", "Field required", "missing")],
        )


class ExpiryInThePast(InvalidInput):
    def __init__(self) -> None:
        super().__init__(
            "expires_at must be a future time with a UTC offset.",
            [body_error("expires_at", "must be in the future", "value_error")],
        )


# --- links from emails, and how often they may be asked for ----------------------------------


class InvalidLink(ProblemError):
    """Unknown, used, expired, or its account is deactivated: one answer for all."""

    def __init__(self, what: str) -> None:
        super().__init__(400, "Bad Request", f"The {what} link is invalid or has expired.")


class InvalidResetLink(InvalidLink):
    def __init__(self) -> None:
        super().__init__("password reset")


class InvalidVerificationLink(InvalidLink):
    def __init__(self) -> None:
        super().__init__("verification")


class TooManyRequests(ProblemError):
    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(
            429, "Too Many Requests", detail, headers={"Retry-After": str(retry_after)}
        )


class TooManyResetRequests(TooManyRequests):
    """The same answer for a known and an unknown address."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("Too many password reset requests. Try again later.", retry_after)


class VerificationRecentlySent(TooManyRequests):
    def __init__(self, retry_after: int) -> None:
        super().__init__("A verification email was sent a moment ago.", retry_after)


# --- refusals: returned, so that what the attempt changed commits -----------------------------


class Refusal(ProblemError):
    """A refused request whose side effects must still commit: returned, never raised."""


class InvalidCredentials(Refusal):
    """One generic answer for an unknown login, a wrong password and a deactivated account."""

    def __init__(self) -> None:
        super().__init__(401, "Unauthorized", "Invalid username, email or password.")


class Locked(Refusal):
    def __init__(self, retry_after: int) -> None:
        super().__init__(
            423,
            "Locked",
            "Too many failed attempts. Try again later.",
            headers={"Retry-After": str(retry_after)},
        )


class TooManyFailedLogins(Refusal):
    """The per-address limit on failed logins across all accounts."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            429,
            "Too Many Requests",
            "Too many failed logins from your address. Try again later.",
            headers={"Retry-After": str(retry_after)},
        )


class TwoFactorRequired(Refusal):
    def __init__(self, detail: str) -> None:
        super().__init__(
            401, "Two-factor authentication required", detail, code="two_factor_required"
        )


class InvalidRefreshToken(Refusal):
    def __init__(self) -> None:
        super().__init__(
            401, "Unauthorized", "The refresh token is invalid or expired. Log in again."
        )


class WrongCurrentPassword(Refusal):
    def __init__(self) -> None:
        super().__init__(403, "Forbidden", "current_password is wrong.")


class InvalidCode(Refusal):
    def __init__(self) -> None:
        super().__init__(400, "Bad Request", "The code is not valid.")


class WrongCode(Refusal):
    """A wrong code given to confirm a change (as ``WrongCurrentPassword`` for passwords)."""

    def __init__(self) -> None:
        super().__init__(403, "Forbidden", "code is not valid.")


class InvalidApiKey(Refusal):
    """Malformed, unknown, revoked, expired, or the owner is deactivated: one answer for all."""

    def __init__(self) -> None:
        super().__init__(401, "Unauthorized", "Invalid API key.")
