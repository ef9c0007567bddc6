"""Signing secrets: generation, encryption at rest, Standard Webhooks signatures."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime

from cryptography.fernet import Fernet
from pydantic import SecretStr
from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"


def generate_secret() -> str:
    """``whsec_`` + base64 of 32 random bytes (the Standard Webhooks / Svix form)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


class SecretBox:
    """Encrypts signing secrets at rest with a Fernet key derived (SHA-256) from the setting."""

    def __init__(self, key: SecretStr) -> None:
        digest = hashlib.sha256(key.get_secret_value().encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    def encrypt(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def decrypt(self, token: str) -> str:
        return self._fernet.decrypt(token.encode()).decode()


def standard_webhook_headers(
    secrets_: Sequence[str], *, msg_id: str, body: str, timestamp: datetime | None = None
) -> dict[str, str]:
    """``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` for ``body``.

    One ``v1,<signature>`` per secret, space-separated (the current secret first; during a
    rotation's overlap the previous one too): a receiver accepts the message if any matches.
    """
    if not secrets_:
        raise ValueError("no signing secret")
    ts = (timestamp or datetime.now(UTC)).replace(microsecond=0)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(ts.timestamp())),
        "webhook-signature": " ".join(Webhook(s).sign(msg_id, ts, body) for s in secrets_),
    }
