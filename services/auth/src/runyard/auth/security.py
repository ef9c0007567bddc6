"""Access-token signing (EdDSA / Ed25519) and the signing key's JWKS form."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from runyard.auth.config import Settings

ISSUER = "runyard"
AUDIENCE = "runyard-api"
ALGORITHM = "EdDSA"


class SigningKeyError(RuntimeError):
    pass


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class SigningKey:
    private_key: Ed25519PrivateKey
    kid: str
    x: str

    @classmethod
    def from_private_key(cls, private_key: Ed25519PrivateKey) -> SigningKey:
        raw = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        x = _b64url(raw)
        # RFC 7638: required members only, lexicographic order, no whitespace.
        canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"))
        kid = _b64url(hashlib.sha256(canonical.encode()).digest())
        return cls(private_key=private_key, kid=kid, x=x)

    @classmethod
    def from_pem(cls, pem: bytes) -> SigningKey:
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as exc:
            raise SigningKeyError("JWT private key is not an unencrypted PEM private key") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise SigningKeyError("JWT private key must be an Ed25519 key")
        return cls.from_private_key(key)

    def public_jwk(self) -> dict[str, str]:
        return {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": self.x,
            "kid": self.kid,
            "alg": ALGORITHM,
            "use": "sig",
        }


def load_signing_key(settings: Settings) -> tuple[SigningKey, str]:
    """The configured key and where it came from; an ephemeral one only in dev and test."""
    if settings.jwt_private_key_file and settings.jwt_private_key:
        raise SigningKeyError("set AUTH_JWT_PRIVATE_KEY_FILE or AUTH_JWT_PRIVATE_KEY, not both")
    if settings.jwt_private_key_file:
        try:
            pem = settings.jwt_private_key_file.read_bytes()
        except OSError as exc:
            raise SigningKeyError(f"cannot read AUTH_JWT_PRIVATE_KEY_FILE: {exc}") from exc
        return SigningKey.from_pem(pem), "file"
    if settings.jwt_private_key:
        return SigningKey.from_pem(settings.jwt_private_key.get_secret_value().encode()), "env"
    if settings.environment not in ("dev", "test"):
        raise SigningKeyError(
            f"no JWT signing key in environment {settings.environment!r}: "
            "set AUTH_JWT_PRIVATE_KEY_FILE or AUTH_JWT_PRIVATE_KEY"
        )
    return SigningKey.from_private_key(Ed25519PrivateKey.generate()), "ephemeral"


@dataclass(frozen=True)
class AccessToken:
    token: str
    expires_in: int
    session_id: uuid.UUID


def issue_access_token(
    key: SigningKey,
    *,
    user_id: uuid.UUID,
    username: str,
    role: str,
    session_id: uuid.UUID,
    now: datetime,
    ttl_seconds: int,
) -> AccessToken:
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": str(user_id),
        "role": role,
        "preferred_username": username,
        "sid": str(session_id),
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(seconds=ttl_seconds)).timestamp()),
        "jti": str(uuid.uuid4()),
        "typ": "access",
    }
    token = jwt.encode(claims, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid})
    return AccessToken(token=token, expires_in=ttl_seconds, session_id=session_id)
