from pydantic_settings import SettingsConfigDict

from runyard.shared.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="EXPERIMENTS_", extra="ignore", frozen=True)
    service_name = "experiments"
