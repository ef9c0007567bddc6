"""Signed one-click unsubscribe links (RFC 8058): who, which event types, until when.

A token is ``<base64url(JSON)>.<base64url(HMAC-SHA256(JSON))>``; the JSON holds the user id
(``u``), the event types (``t``) and the expiry in Unix seconds (``e``). Only the notifications
service can make or check one (``NOTIFICATIONS_UNSUBSCRIBE_SECRET``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode

from runyard.notifications.config import Settings

UNSUBSCRIBE_PATH = "/api/v1/notifications/unsubscribe"
#: The page an account email's link opens, by event type. The token travels in the fragment
#: (``#token=...``), which browsers never send to a server, so it stays out of access logs and
#: ``Referer`` headers; the page posts it to the API (``docs/api.md``, auth).
ACCOUNT_PAGES = {
    "password_reset.requested": "/account/reset-password",
    "email_verification.requested": "/account/verify-email",
}


class InvalidToken(ValueError):
    pass


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Unsubscribe:
    user_id: uuid.UUID
    event_types: tuple[str, ...]
    expires_at: datetime


@dataclass(frozen=True)
class Links:
    public_url: str
    secret: bytes
    ttl: timedelta
    #: derives the tokens of reset and verification links (``EmailLinkRequested``)
    email_link_secret: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> Links:
        return cls(
            public_url=settings.public_url.rstrip("/"),
            secret=settings.unsubscribe_secret.get_secret_value().encode(),
            ttl=timedelta(seconds=settings.unsubscribe_token_ttl_s),
            email_link_secret=settings.email_link_secret.get_secret_value(),
        )

    def account_link(self, event_type: str, token: str) -> str:
        """The link of an account email: its page on the public URL, the token in the
        fragment."""
        return f"{self.public_url}{ACCOUNT_PAGES[event_type]}#{urlencode({'token': token})}"

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self.secret, body, hashlib.sha256).digest()

    def unsubscribe_token(
        self, user_id: uuid.UUID, event_types: list[str] | tuple[str, ...], *, now: datetime
    ) -> str:
        claims = {
            "u": str(user_id),
            "t": sorted(set(event_types)),
            "e": int((now + self.ttl).timestamp()),
        }
        body = json.dumps(claims, separators=(",", ":"), sort_keys=True).encode()
        return f"{_b64encode(body)}.{_b64encode(self._mac(body))}"

    def unsubscribe_url(
        self, user_id: uuid.UUID, event_types: list[str] | tuple[str, ...], *, now: datetime
    ) -> str:
        token = self.unsubscribe_token(user_id, event_types, now=now)
        return f"{self.public_url}{UNSUBSCRIBE_PATH}?{urlencode({'token': token})}"

    def read_unsubscribe_token(self, token: str, *, now: datetime) -> Unsubscribe:
        """The token's claims; raises :class:`InvalidToken` if tampered, malformed or expired."""
        body_part, _, mac_part = token.partition(".")
        try:
            body, mac = _b64decode(body_part), _b64decode(mac_part)
        except (binascii.Error, ValueError) as exc:
            raise InvalidToken("malformed token") from exc
        if not body or not hmac.compare_digest(mac, self._mac(body)):
            raise InvalidToken("bad signature")
        try:
            claims = json.loads(body)
            user_id = uuid.UUID(claims["u"])
            event_types = tuple(str(t) for t in claims["t"])
            expires_at = datetime.fromtimestamp(int(claims["e"]), tz=now.tzinfo)
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidToken("malformed claims") from exc
        if expires_at <= now:
            raise InvalidToken("expired")
        return Unsubscribe(user_id=user_id, event_types=event_types, expires_at=expires_at)
