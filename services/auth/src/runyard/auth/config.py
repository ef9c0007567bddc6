from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from runyard.shared.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="AUTH_", extra="ignore", frozen=True)
    service_name = "auth"

    jwt_private_key_file: Path | None = None
    """PEM file holding the Ed25519 key that signs access tokens."""
    jwt_private_key: SecretStr | None = None
    """The same key as PEM text; use one of the two. Neither: ephemeral key (dev/test only)."""
    access_token_ttl_seconds: int = Field(default=900, ge=60, le=3600)
