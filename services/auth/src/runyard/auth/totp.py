"""TOTP (RFC 6238 via pyotp) and backup codes.

A code is accepted for the current 30-second step and one step either side; the step it matched
is remembered, so the same code (or an older one) cannot be used again. Secrets are stored
encrypted (Fernet, key derived from ``AUTH_TOTP_ENCRYPTION_KEY``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from datetime import datetime

import pyotp
from cryptography.fernet import Fernet, InvalidToken

STEP_SECONDS = 30
DIGITS = 6
VALID_WINDOW = 1
BACKUP_CODE_COUNT = 10
#: Backup codes: 10 characters of lower-case base32 (50 bits), shown as ``xxxxx-xxxxx``.
_BACKUP_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
_BACKUP_CODE = re.compile(r"^[a-z2-7]{10}$")
_TOTP_CODE = re.compile(r"^\d{6}$")


class SecretBox:
    """Encrypts TOTP secrets at rest."""

    def __init__(self, key: str) -> None:
        derived = hashlib.sha256(key.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    def seal(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def open(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken as exc:
            raise ValueError(
                "TOTP secret cannot be decrypted with AUTH_TOTP_ENCRYPTION_KEY"
            ) from exc


def new_secret() -> str:
    """160 random bits in base32, as RFC 4226 recommends."""
    return pyotp.random_base32(32)


def provisioning_uri(secret: str, *, account: str, issuer: str) -> str:
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(
        name=account, issuer_name=issuer
    )


def step_at(moment: datetime) -> int:
    return int(moment.timestamp()) // STEP_SECONDS


def code_at_step(secret: str, step: int) -> str:
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).generate_otp(step)


def looks_like_totp(code: str) -> bool:
    return bool(_TOTP_CODE.match(code))


def matching_step(
    secret: str, code: str, *, now: datetime, last_used_step: int | None
) -> int | None:
    """The step ``code`` belongs to (now ±1 step, newer than ``last_used_step``), else None."""
    if not looks_like_totp(code):
        return None
    current = step_at(now)
    for step in range(current - VALID_WINDOW, current + VALID_WINDOW + 1):
        if last_used_step is not None and step <= last_used_step:
            continue
        if hmac.compare_digest(code_at_step(secret, step), code):
            return step
    return None


def new_backup_codes() -> list[str]:
    codes = (
        "".join(secrets.choice(_BACKUP_ALPHABET) for _ in range(10))
        for _ in range(BACKUP_CODE_COUNT)
    )
    return [f"{code[:5]}-{code[5:]}" for code in codes]


def normalize_backup_code(code: str) -> str | None:
    """``ABCDE-fghij`` / ``abcde fghij`` -> ``abcdefghij``; None if it cannot be a backup code."""
    compact = re.sub(r"[\s-]", "", code).lower()
    return compact if _BACKUP_CODE.match(compact) else None
