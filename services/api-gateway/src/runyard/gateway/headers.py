"""Security headers on every gateway response (``GATEWAY_SECURITY_HEADERS_ENABLED``)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Response headers a browser client may read across origins (CORS).
EXPOSED_HEADERS = [
    "X-Request-ID",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "Retry-After",
    "Location",
]

_ALWAYS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
#: API answers are data, never a page: nothing in them may load or run.
_API_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")
_API_PATHS = ("/api/", "/ajax-api/")


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, *, hsts_max_age_s: int = 0) -> None:
        self.app = app
        self.extra = list(_ALWAYS)
        if hsts_max_age_s > 0:
            self.extra.append((b"strict-transport-security", f"max-age={hsts_max_age_s}".encode()))
        self.api_extra = [*self.extra, _API_CSP]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = self.api_extra if scope["path"].startswith(_API_PATHS) else self.extra

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [
                    (k, v) for k, v in extra if k not in present
                ]
            await send(message)

        await self.app(scope, receive, send_with_headers)
