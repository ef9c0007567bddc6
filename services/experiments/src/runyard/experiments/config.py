from pydantic import Field
from pydantic_settings import SettingsConfigDict

from runyard.shared.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="EXPERIMENTS_", extra="ignore", frozen=True)
    service_name = "experiments"

    #: a search (GET /experiments, saved-search runs) running longer is cancelled: 503
    search_statement_timeout_ms: int = Field(default=5000, ge=100)
