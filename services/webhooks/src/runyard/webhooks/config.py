from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from runyard.shared.settings import ServiceSettings, dev_secret


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="WEBHOOKS_", extra="ignore", frozen=True)
    service_name = "webhooks"

    #: Dev/test only: lets targets on loopback/private networks and plain http be saved.
    allow_private_targets: bool = False
    #: Encrypts stored signing secrets (a Fernet key is derived from it with SHA-256).
    secret_encryption_key: SecretStr = dev_secret("webhooks-secret-encryption-key")
    delivery_timeout_s: float = 15.0
    delivery_lease_margin_s: float = 30.0
    delivery_batch_size: int = 50
    delivery_concurrency: int = 20
    delivery_poll_interval_s: float = 0.5
