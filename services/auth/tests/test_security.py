from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from runyard.auth.config import Settings
from runyard.auth.security import SigningKey, SigningKeyError, load_signing_key

# RFC 8037 appendix A.1-A.3: the example Ed25519 key and its RFC 7638 thumbprint.
RFC8037_D = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"
RFC8037_X = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
RFC8037_THUMBPRINT = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def rfc8037_pem() -> bytes:
    raw = base64.urlsafe_b64decode(RFC8037_D + "=")
    return Ed25519PrivateKey.from_private_bytes(raw).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def production(**values: object) -> Settings:
    """Production settings with every secret set (else they refuse to load)."""
    return Settings(
        environment="production",
        identity_secret="production-identity-secret-of-32-bytes-or-more",
        totp_encryption_key="production-totp-key-of-32-bytes-or-more",
        email_link_secret="production-email-link-secret-of-32-bytes-or-more",
        **values,  # type: ignore[arg-type]
    )


def test_kid_is_the_rfc7638_thumbprint_of_the_public_key() -> None:
    key = SigningKey.from_pem(rfc8037_pem())
    assert key.x == RFC8037_X
    assert key.kid == RFC8037_THUMBPRINT


def test_key_is_loaded_from_pem_file(tmp_path) -> None:
    path = tmp_path / "jwt.pem"
    path.write_bytes(rfc8037_pem())
    key, origin = load_signing_key(production(jwt_private_key_file=path))
    assert (key.kid, origin) == (RFC8037_THUMBPRINT, "file")


def test_key_is_loaded_from_pem_text() -> None:
    key, origin = load_signing_key(production(jwt_private_key=rfc8037_pem().decode()))
    assert (key.kid, origin) == (RFC8037_THUMBPRINT, "env")


def test_production_without_a_key_refuses_to_start() -> None:
    with pytest.raises(SigningKeyError):
        load_signing_key(production())


def test_dev_without_a_key_gets_an_ephemeral_one() -> None:
    _key, origin = load_signing_key(Settings(environment="dev"))
    assert origin == "ephemeral"


def test_non_ed25519_key_is_refused() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(SigningKeyError, match="Ed25519"):
        SigningKey.from_pem(pem)
