from pydantic import Field
from pydantic_settings import SettingsConfigDict

from runyard.shared.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="EXPERIMENTS_", extra="ignore", frozen=True)
    service_name = "experiments"

    #: a search (GET /experiments, saved-search runs) running longer is cancelled: 503
    search_statement_timeout_ms: int = Field(default=5000, ge=100)

    #: where generated and imported signal files live (``generations/<job>``, ``imports/<job>``);
    #: server-side import paths must lie inside it
    data_dir: str = ".data/experiments"
    #: a multipart upload to POST /dataset-imports larger than this is refused: 413. The same as
    #: the gateway's GATEWAY_MAX_BODY_BYTES; raise both together (larger files: import by path)
    upload_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    #: the largest ``explanation_data`` document stored (serialized JSON): 413 beyond
    explanation_max_bytes: int = Field(default=1024 * 1024, ge=1024)
    #: pause of the dataset-job worker when it found nothing to do
    job_poll_interval_s: float = Field(default=1.0, gt=0)
    #: a claimed job whose worker stopped renewing its lease this long ago is taken over
    job_lease_s: float = Field(default=60.0, gt=0)
    #: signals a generation job writes (and commits progress for) per step
    generation_chunk_size: int = Field(default=100, ge=1)
