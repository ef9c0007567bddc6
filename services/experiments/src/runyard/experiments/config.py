from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from runyard.shared.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="EXPERIMENTS_", extra="ignore", frozen=True)
    service_name = "experiments"

    #: a search (GET /experiments, saved-search runs) running longer is cancelled: 503
    search_statement_timeout_ms: int = Field(default=5000, ge=100)

    #: where generated and uploaded signal files live (``generations/<job>``,
    #: ``uploads/<owner>/<job>``); an import by path reads only the caller's ``uploads/<owner>``
    data_dir: str = ".data/experiments"
    #: a multipart upload to POST /dataset-imports larger than this is refused: 413. The same as
    #: the gateway's GATEWAY_MAX_BODY_BYTES; raise both together
    upload_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    #: the largest ``explanation_data`` document stored (serialized JSON): 413 beyond
    explanation_max_bytes: int = Field(default=1024 * 1024, ge=1024)
    #: longest pause of the dataset-job worker when it found nothing to do: a request of the
    #: same process that queues a job wakes it at once (``runtime.work``)
    job_poll_interval_s: float = Field(default=10.0, gt=0)
    #: a claimed job whose worker stopped renewing its lease this long ago is taken over
    job_lease_s: float = Field(default=60.0, gt=0)
    #: signals a generation job writes (and commits progress for) per step, fewer for long
    #: signals (a step holds at most 32 MiB of samples)
    generation_chunk_size: int = Field(default=100, ge=1)
    #: a generation writing more samples than this (signals x samples per signal) is refused: 422
    generation_max_samples: int = Field(default=100_000_000, ge=1)
    #: what one import job may read, counted before reading: each CSV's size and each NPZ
    #: member's declared uncompressed size; beyond it the job fails
    import_max_expanded_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    #: signals one import job may create; beyond it the job fails
    import_max_signals: int = Field(default=100_000, ge=1)
    #: a job claimed this many times without finishing (its worker died each time) fails
    job_max_attempts: int = Field(default=3, ge=1)
    #: bytes of signal files one user's jobs may hold (uploads, generated files): 422 beyond
    user_quota_bytes: int = Field(default=2 * 1024**3, ge=0)
    #: pending and running jobs (generations and imports together) one user may have: 422 beyond
    user_max_active_jobs: int = Field(default=4, ge=1)
    #: a running experiment without a heartbeat or a logged epoch for this long is marked
    #: stalled (``experiment.stalled``); an experiment's own ``stale_after_s`` wins
    stale_after_s: float = Field(default=600.0, gt=0)
    #: how often the ``stalled-runs`` worker looks for silent running experiments
    stall_poll_interval_s: float = Field(default=15.0, gt=0)
    #: ``experiment.epochs_logged``: the requests of one experiment within this window become
    #: one event (the ``epoch-events`` worker writes it when the window ends)
    epoch_events_window_s: float = Field(default=0.25, ge=0)
    #: how often that worker looks for pending events no request of its process announced
    #: (another replica's, or left by a stopped process)
    epoch_events_poll_s: float = Field(default=5.0, gt=0)
    #: MLflow ``log-batch`` / ``log-metric`` of new epochs to a running run as one SQL function
    #: call (``mlflow_log_epochs``, its own transaction) instead of the statements of the Python
    #: path; both leave the same rows. Off: every request takes the Python path
    mlflow_sql_log_path: bool = True

    # --- artifacts: files of experiments (metadata in PostgreSQL, bytes in the store)
    #: where artifact bytes live: ``local`` (content-addressed under ``<data_dir>/artifacts``) or
    #: ``s3`` (an S3-compatible bucket: the EXPERIMENTS_ARTIFACT_S3_* settings)
    artifact_store: Literal["local", "s3"] = "local"
    #: one artifact larger than this is refused (413), counted while it streams in
    artifact_max_bytes: int = Field(default=5 * 1024**3, ge=1)
    #: bytes of artifacts one user's experiments may hold (each artifact's size, identical files
    #: counted each time): an upload past it is refused (413)
    artifact_user_quota_bytes: int = Field(default=50 * 1024**3, ge=0)
    #: bytes read from or written to the store at a time (an S3 multipart part: at least 5 MiB)
    artifact_chunk_bytes: int = Field(default=8 * 1024 * 1024, ge=64 * 1024)
    #: how often the ``artifact-gc`` worker removes blobs no artifact references (those of
    #: deleted experiments)
    artifact_gc_interval_s: float = Field(default=300.0, gt=0)
    #: an upload's staged copy older than this is left over from a process killed mid-upload:
    #: the ``artifact-gc`` worker removes it (and aborts such S3 multipart uploads)
    artifact_staging_max_age_s: float = Field(default=24 * 3600.0, gt=0)
    #: the bucket of the ``s3`` store (it must exist)
    artifact_s3_bucket: str = ""
    #: key prefix of the blobs in the bucket
    artifact_s3_prefix: str = "artifacts/"
    #: endpoint of an S3-compatible server (MinIO, Ceph ...); empty: AWS
    artifact_s3_endpoint_url: str = ""
    artifact_s3_region: str = "us-east-1"
    #: empty: boto3's default credential chain (environment, profile, instance role)
    artifact_s3_access_key_id: str = ""
    artifact_s3_secret_access_key: str = ""

    # --- the prediction log of model versions (``predictions/``)
    #: months of predictions kept before the current one: older monthly partitions are dropped
    #: by the ``prediction-partitions`` worker, and a prediction older than the first kept month
    #: is refused (422)
    predictions_retention_months: int = Field(default=12, ge=0, le=120)
    #: monthly partitions made ahead of the current month
    predictions_months_ahead: int = Field(default=3, ge=1, le=24)
    #: a prediction timed further in the future than this is refused (422)
    predictions_max_future_s: float = Field(default=3600.0, ge=0)
    #: how often the ``prediction-partitions`` worker makes and drops partitions
    predictions_partition_interval_s: float = Field(default=3600.0, gt=0)
    #: a stats window of at most this many predictions gets exact latency percentiles
    #: (``percentile_cont`` over the rows); above, they are read from the rollups' histograms
    predictions_exact_percentiles_max: int = Field(default=100_000, ge=0)
    #: ``model_version.drift_detected`` when the PSI of the confidence distribution of the last
    #: ``drift_window_s`` against the version's first day of predictions reaches this
    drift_psi_threshold: float = Field(default=0.2, gt=0)
    drift_window_s: float = Field(default=86400.0, gt=0)
    #: the window and the first day each need this many predictions with a confidence
    drift_min_predictions: int = Field(default=100, ge=1)
    #: at most one drift event per version within this time
    drift_cooldown_s: float = Field(default=86400.0, ge=0)
    #: how often the ``prediction-drift`` worker checks every version with recent predictions
    drift_check_interval_s: float = Field(default=300.0, gt=0)
