"""Signing secrets: generation, encryption at rest, Standard Webhooks signatures."""

from __future__ import annotations

import base64
import functools
import hashlib
import secrets
from collections import OrderedDict
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
    """Encrypts signing secrets at rest with a Fernet key derived (SHA-256) from the setting.

    ``SecretBox.of(key)`` is the process's box for ``key``: it remembers the last
    ``DECRYPTED_KEPT`` secrets it decrypted (every delivery attempt needs its endpoint's), so
    an attempt costs no decryption. They stay in this process's memory only, as the
    decrypted secret of each attempt does anyway."""

    DECRYPTED_KEPT = 1024

    def __init__(self, key: SecretStr) -> None:
        digest = hashlib.sha256(key.get_secret_value().encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))
        self._decrypted: OrderedDict[str, str] = OrderedDict()

    @staticmethod
    def of(key: SecretStr) -> SecretBox:
        return _box(key.get_secret_value())

    def encrypt(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def decrypt(self, token: str) -> str:
        secret = self._decrypted.get(token)
        if secret is None:
            secret = self._fernet.decrypt(token.encode()).decode()
            self._decrypted[token] = secret
            if len(self._decrypted) > self.DECRYPTED_KEPT:
                self._decrypted.popitem(last=False)
        return secret


@functools.lru_cache(maxsize=4)
def _box(key: str) -> SecretBox:
    return SecretBox(SecretStr(key))


@functools.lru_cache(maxsize=1024)
def _signer(secret: str) -> Webhook:
    return Webhook(secret)


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
        "webhook-signature": " ".join(_signer(s).sign(msg_id, ts, body) for s in secrets_),
    }
