from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from runyard.shared.settings import ServiceSettings, dev_secret

#: OWASP Password Storage Cheat Sheet, argon2id: m=19 MiB, t=2, p=1.
OWASP_ARGON2_MEMORY_KIB = 19456
OWASP_ARGON2_TIME_COST = 2
OWASP_ARGON2_PARALLELISM = 1


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="AUTH_", extra="ignore", frozen=True)
    service_name = "auth"

    jwt_private_key_file: Path | None = None
    """PEM file holding the Ed25519 key that signs access tokens."""
    jwt_private_key: SecretStr | None = None
    """The same key as PEM text; use one of the two. Neither: ephemeral key (dev/test only)."""
    access_token_ttl_seconds: int = Field(default=900, ge=60, le=3600)
    refresh_token_ttl_seconds: int = Field(default=2_592_000, ge=3600)
    """Lifetime of each refresh token (30 days); every refresh issues a new one."""

    password_hash_memory_kib: int = Field(default=OWASP_ARGON2_MEMORY_KIB, ge=8)
    password_hash_time_cost: int = Field(default=OWASP_ARGON2_TIME_COST, ge=1)
    password_hash_parallelism: int = Field(default=OWASP_ARGON2_PARALLELISM, ge=1)

    lockout_failure_factor: int = Field(default=5, ge=1)
    """Keycloak's ``failureFactor``: consecutive failures per lock step."""
    lockout_wait_increment_seconds: int = Field(default=60, ge=1)
    lockout_max_wait_seconds: int = Field(default=900, ge=1)
    lockout_failure_reset_seconds: int = Field(default=43_200, ge=1)
    """Keycloak's ``maxDeltaTimeSeconds``: a failure this long after the last one starts anew."""
    login_ip_max_failures: int = Field(default=30, ge=1)
    """Failed logins one client address may make across all accounts within the window."""
    login_ip_window_seconds: int = Field(default=900, ge=1)

    totp_issuer: str = "Runyard"
    totp_encryption_key: SecretStr = dev_secret("auth-totp-encryption-key")
    """Encrypts stored TOTP secrets (a Fernet key is derived from it with SHA-256)."""

    email_link_secret: SecretStr = dev_secret("email-link-token")
    """Derives the tokens of reset and verification links from the events' public ``link_id``;
    the same value as ``NOTIFICATIONS_EMAIL_LINK_SECRET``, and no other service's."""
    password_reset_token_ttl_seconds: int = Field(default=1800, ge=60, le=86_400)
    password_reset_max_per_address: int = Field(default=3, ge=1)
    """Reset requests one address may get within the window (known address or not)."""
    password_reset_max_per_client: int = Field(default=20, ge=1)
    """Reset requests one client (IPv4 address, IPv6 /64) may make within the window."""
    password_reset_window_seconds: int = Field(default=3600, ge=60)
    email_verification_ttl_seconds: int = Field(default=86_400, ge=300)
