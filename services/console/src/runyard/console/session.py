"""The browser's session: the user's API tokens sealed (AES-GCM) into one HttpOnly,
SameSite=Lax cookie (Secure outside dev), so no token ever reaches page scripts, and the
console keeps no session store. CSRF: a per-session synchronizer token for signed-in forms and
requests, and for the sign-in forms an HMAC of a random cookie (a signed double submit)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SESSION_COOKIE = "ry_session"
PENDING_COOKIE = "ry_pending"
CSRF_COOKIE = "ry_csrf"
#: the two-factor step has this long to be completed
PENDING_MAX_AGE_S = 300


@dataclass
class Session:
    access_token: str
    refresh_token: str
    user_id: str
    username: str
    role: str
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    #: when the access token expires (Unix seconds)
    access_expires_at: float = 0.0


class Sealer:
    """Authenticated encryption of small JSON documents with an expiry."""

    def __init__(self, secret: str, purpose: str) -> None:
        key = hashlib.sha256(f"runyard-console:{purpose}:{secret}".encode()).digest()
        self._aead = AESGCM(key)
        self._purpose = purpose.encode()

    def seal(self, data: dict[str, Any], *, max_age_s: float) -> str:
        document = json.dumps({"d": data, "x": time.time() + max_age_s}, separators=(",", ":"))
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, document.encode(), self._purpose)
        return base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")

    def open(self, value: str | None) -> dict[str, Any] | None:
        """The document, or None when missing, forged, altered or expired."""
        if not value or len(value) > 8192:
            return None
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            document = json.loads(self._aead.decrypt(raw[:12], raw[12:], self._purpose))
        except (ValueError, InvalidTag, json.JSONDecodeError):
            return None
        if not isinstance(document, dict) or float(document.get("x", 0)) < time.time():
            return None
        data = document.get("d")
        return data if isinstance(data, dict) else None


class Sessions:
    def __init__(self, secret: str, *, max_age_s: int) -> None:
        self.max_age_s = max_age_s
        self._session = Sealer(secret, "session")
        self._pending = Sealer(secret, "pending-login")
        self._csrf_key = hashlib.sha256(f"runyard-console:csrf:{secret}".encode()).digest()

    def seal(self, session: Session) -> str:
        return self._session.seal(asdict(session), max_age_s=self.max_age_s)

    def open(self, value: str | None) -> Session | None:
        data = self._session.open(value)
        if data is None:
            return None
        try:
            return Session(**data)
        except TypeError:
            return None

    def seal_pending(self, login: str, password: str) -> str:
        """The first step of a sign-in that needs a code: kept sealed, never in the page."""
        return self._pending.seal({"l": login, "p": password}, max_age_s=PENDING_MAX_AGE_S)

    def open_pending(self, value: str | None) -> tuple[str, str] | None:
        data = self._pending.open(value)
        if data is None or not isinstance(data.get("l"), str) or not isinstance(data.get("p"), str):
            return None
        return data["l"], data["p"]

    def anonymous_token(self, nonce: str) -> str:
        """The CSRF token of the sign-in forms for the browser holding ``nonce`` in its cookie."""
        return hmac.new(self._csrf_key, nonce.encode(), hashlib.sha256).hexdigest()

    def anonymous_token_valid(self, nonce: str | None, token: str | None) -> bool:
        if not nonce or not token:
            return False
        return hmac.compare_digest(self.anonymous_token(nonce), token)


def session_token_valid(session: Session, token: str | None) -> bool:
    return bool(token) and hmac.compare_digest(session.csrf, token or "")


def new_nonce() -> str:
    return secrets.token_urlsafe(24)
