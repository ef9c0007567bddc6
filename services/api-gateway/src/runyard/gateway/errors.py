"""The gateway's own errors, each rendered as problem+json with its status.

An invalid ``?cursor=`` of an admin list is ``runyard.shared.pagination.InvalidCursor``
(400 "Invalid cursor").
"""

from __future__ import annotations

from runyard.shared.http import ProblemError

BEARER_CHALLENGE = 'Bearer realm="runyard"'


# --- who is calling ----------------------------------------------------------------------------


class Unauthorized(ProblemError):
    """401 with a ``WWW-Authenticate`` challenge; ``invalid``: credentials were sent but are
    not good (``error="invalid_token"``), else none were sent."""

    def __init__(self, detail: str, *, invalid: bool) -> None:
        challenge = BEARER_CHALLENGE + (', error="invalid_token"' if invalid else "")
        super().__init__(401, "Unauthorized", detail, headers={"WWW-Authenticate": challenge})


class InvalidApiKey(ProblemError):
    def __init__(self) -> None:
        super().__init__(
            401, "Unauthorized", "Invalid API key.", headers={"WWW-Authenticate": BEARER_CHALLENGE}
        )


class InvalidPassword(Unauthorized):
    """401: auth refused the Basic credentials (one answer for every cause, as auth's)."""

    def __init__(self) -> None:
        super().__init__("Invalid username, email or password.", invalid=True)


class SecondFactorRequired(Unauthorized):
    """401: the password is right but the account has two-factor authentication on, and Basic
    credentials carry no code."""

    def __init__(self) -> None:
        super().__init__(
            "This account has two-factor authentication on, so a username and password cannot "
            "be used here: create an API key and send it as the token "
            "(MLFLOW_TRACKING_TOKEN=ry_...).",
            invalid=True,
        )


class AccountLockedOut(ProblemError):
    """401 with ``Retry-After``: auth locked the account after repeated failed logins (auth
    answers 423; MLflow clients know no such status, and the credentials are what is refused)."""

    def __init__(self, *, retry_after_s: int) -> None:
        super().__init__(
            401,
            "Unauthorized",
            f"The account is locked after repeated failed logins; try again in {retry_after_s} s.",
            headers={"WWW-Authenticate": BEARER_CHALLENGE, "Retry-After": str(retry_after_s)},
        )


class TooManyFailedLogins(ProblemError):
    """429: auth's limit on failed logins from this client (across accounts)."""

    def __init__(self, *, retry_after_s: int) -> None:
        super().__init__(
            429,
            "Too Many Requests",
            f"Too many failed logins from this address; retry in {retry_after_s} s.",
            type_="https://runyard.dev/problems/rate-limited",
            headers={"Retry-After": str(retry_after_s)},
        )


class InsufficientScope(ProblemError):
    """403: the API key is good but does not cover this request."""

    def __init__(self, scope: str) -> None:
        super().__init__(
            403,
            "Forbidden",
            f"This API key lacks the {scope!r} scope.",
            type_="https://runyard.dev/problems/insufficient-scope",
            required_scope=scope,
        )


class AdminOnly(ProblemError):
    def __init__(self) -> None:
        super().__init__(403, "Forbidden", "Only administrators may read this.")


class TokensUnverifiable(ProblemError):
    """503: the auth service's signing keys cannot be fetched."""

    def __init__(self) -> None:
        super().__init__(
            503, "Service Unavailable", "Tokens cannot be verified right now; try again shortly."
        )


class CredentialsUnavailable(ProblemError):
    """503: the auth service cannot tell whether an API key or a session is valid."""

    def __init__(self) -> None:
        super().__init__(
            503,
            "Service Unavailable",
            "Credentials cannot be checked right now; try again shortly.",
        )


class RateLimited(ProblemError):
    """429 with ``Retry-After`` and the bucket's ``RateLimit-*`` headers."""

    def __init__(self, *, limit: int, retry_after_s: int, headers: dict[str, str]) -> None:
        super().__init__(
            429,
            "Too Many Requests",
            f"Rate limit of {limit} requests per minute exceeded; retry in {retry_after_s} s.",
            type_="https://runyard.dev/problems/rate-limited",
            headers={**headers, "Retry-After": str(retry_after_s)},
        )


class TooManyInvalidApiKeys(ProblemError):
    """429: this address sent too many API keys that auth does not know (``keyguard.py``)."""

    def __init__(self, *, limit: int, retry_after_s: int) -> None:
        super().__init__(
            429,
            "Too Many Requests",
            f"More than {limit} invalid API keys per minute from this address; "
            f"retry in {retry_after_s} s.",
            type_="https://runyard.dev/problems/rate-limited",
            headers={"Retry-After": str(retry_after_s)},
        )


# --- where the request goes --------------------------------------------------------------------


class DotSegments(ProblemError):
    def __init__(self) -> None:
        super().__init__(400, "Bad Request", "The path must not contain '.' or '..' segments.")


class UnknownArea(ProblemError):
    """404: no service owns the first path segment after ``/api/v1/``."""

    def __init__(self, area: str) -> None:
        super().__init__(404, "Not Found", f"No API area '{area}'.")


class BodyTooLarge(ProblemError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            413,
            "Content Too Large",
            f"The request body must not exceed {limit} bytes.",
            limit=limit,
        )


class UpstreamUnreachable(ProblemError):
    def __init__(self, service: str) -> None:
        super().__init__(502, "Bad Gateway", f"The {service} service is unreachable.")


class UpstreamTimeout(ProblemError):
    def __init__(self, service: str) -> None:
        super().__init__(504, "Gateway Timeout", f"The {service} service did not answer in time.")


class UpstreamUnavailable(ProblemError):
    """503 while the upstream's circuit is open; ``retry_after_s`` until the next trial."""

    def __init__(self, service: str, *, retry_after_s: int) -> None:
        super().__init__(
            503,
            "Service Unavailable",
            f"The {service} service is unavailable; try again shortly.",
            type_="https://runyard.dev/problems/upstream-unavailable",
            headers={"Retry-After": str(retry_after_s)},
            upstream=service,
        )
