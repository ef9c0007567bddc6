"""Opaque secrets: refresh tokens, API keys, email links. Only their SHA-256 is ever stored.

API keys look like GitHub's tokens: ``ry_`` + 30 random base62 characters (178 bits) + 6 base62
characters of CRC32 over the random part. The fixed prefix lets secret scanners find leaked keys;
the checksum lets them (and the gateway) tell a real-looking key from a typo or a random string
without asking the database.
"""

from __future__ import annotations

import hashlib
import secrets
import string
import zlib

API_KEY_PREFIX = "ry_"
API_KEY_RANDOM_LENGTH = 30
API_KEY_CHECKSUM_LENGTH = 6
API_KEY_LENGTH = len(API_KEY_PREFIX) + API_KEY_RANDOM_LENGTH + API_KEY_CHECKSUM_LENGTH
#: How much of a key is kept in clear for display: ``ry_`` + 8 characters.
API_KEY_DISPLAY_LENGTH = len(API_KEY_PREFIX) + 8

BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
_BASE62_SET = frozenset(BASE62)


def sha256_hex(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_refresh_token() -> str:
    """256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def new_link_id() -> str:
    """The public handle of an email link (its token is derived from it): 256 random bits."""
    return secrets.token_urlsafe(32)


def base62(number: int, width: int) -> str:
    digits = []
    while number:
        number, rest = divmod(number, 62)
        digits.append(BASE62[rest])
    return "".join(reversed(digits)).rjust(width, "0")


def api_key_checksum(random_part: str) -> str:
    return base62(zlib.crc32(random_part.encode()), API_KEY_CHECKSUM_LENGTH)


def new_api_key() -> str:
    random_part = "".join(secrets.choice(BASE62) for _ in range(API_KEY_RANDOM_LENGTH))
    return f"{API_KEY_PREFIX}{random_part}{api_key_checksum(random_part)}"


def is_well_formed_api_key(key: str) -> bool:
    """Prefix, length, alphabet and checksum are right (says nothing about whether it exists)."""
    if len(key) != API_KEY_LENGTH or not key.startswith(API_KEY_PREFIX):
        return False
    body = key[len(API_KEY_PREFIX) :]
    if not set(body) <= _BASE62_SET:
        return False
    random_part, checksum = body[:API_KEY_RANDOM_LENGTH], body[API_KEY_RANDOM_LENGTH:]
    return secrets.compare_digest(api_key_checksum(random_part), checksum)


def api_key_display_prefix(key: str) -> str:
    return key[:API_KEY_DISPLAY_LENGTH]
