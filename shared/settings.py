"""One settings class, read from the environment by every process (API, workers, CLI)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, PlainValidator, SecretStr
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.storage.location import StoreLocation, parse_location

#: ``MODELS_DIR`` / ``DATA_DIR``: a folder, or an ``s3://`` URL (checked when settings are read).
Location = Annotated[StoreLocation, PlainValidator(parse_location), NoDecode]


class Settings(BaseSettings):
    """Every field has a default so that a fresh clone runs with no configuration at all."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    models_dir: Location = Field(
        Path("models"),
        description="The model registry: a folder, or `s3://BUCKET/PREFIX` in an object store.",
    )
    data_dir: Location = Field(
        Path("data"),
        description="The datasets: a folder, or `s3://BUCKET/PREFIX` in an object store.",
    )
    s3_endpoint_url: str | None = Field(
        None,
        description="The S3-compatible server of `s3://` locations (SeaweedFS, MinIO...); unset: AWS.",
    )
    aws_access_key_id: str | None = Field(
        None, description="Object store key id; unset: boto3's own lookup (profile, role)."
    )
    aws_secret_access_key: SecretStr | None = Field(
        None, description="Object store secret key, with AWS_ACCESS_KEY_ID."
    )
    aws_region: str | None = Field(None, description="Object store region; unset: `us-east-1`.")
    default_dataset: str = Field(
        "synthetic_default.csv", description="Dataset used when a training names none."
    )
    default_dataset_rows: int = Field(
        200_000, description="Rows of the synthetic default dataset made on first use."
    )
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="Redis URL: Celery broker, job records, worker presence, job metrics.",
    )
    host: str = Field("127.0.0.1", description="Address the API listens on.")
    port: int = Field(8000, description="Port the API listens on.")
    api_workers: int = Field(
        1, ge=1, description="API processes `python -m api.server` (and `rvt serve`) runs."
    )
    prometheus_multiproc_dir: Path | None = Field(
        None,
        description=(
            "Folder where several API processes keep their metrics (emptied at each start); "
            "unset: a fresh temporary folder per start. Unused with API_WORKERS=1."
        ),
    )
    api_url: str = Field(
        "http://127.0.0.1:8000", description="Where `rvt api` and `rvt demo` find a running API."
    )
    log_level: str = Field(
        "INFO", description="Log level of every process: DEBUG, INFO, WARNING or ERROR."
    )
    min_roc_auc: float = Field(
        0.7, description="Quality gate: a run is promoted only if its ROC AUC reaches this."
    )
    chunk_rows: int = Field(
        250_000, description="Rows read per chunk when streaming a CSV (bounds memory)."
    )
    redis_prefix: str = Field("rvt", description="Prefix of every Redis key the project writes.")
    job_ttl_seconds: int = Field(
        7 * 86_400, description="How long job records are kept in Redis after their last change."
    )
    job_lease_seconds: float = Field(
        15.0,
        description="A running job whose worker did not renew its lease for this long is lost.",
    )
    training_time_limit_seconds: int = Field(
        3600, description="A training running longer than this ends as failed."
    )
    predict_timeout_seconds: float = Field(
        5.0, description="How long POST /predict waits for a prediction worker."
    )
    predict_max_waiting: int = Field(
        16,
        ge=1,
        description=(
            "Predictions one API process holds waiting for a worker; past it, POST /predict "
            "answers 503 with Retry-After at once (overload is shed, not queued)."
        ),
    )
    max_upload_bytes: int = Field(
        200 * 1024 * 1024, description="Largest dataset upload accepted by POST /datasets."
    )
    worker_announce_seconds: float = Field(
        2.0, description="How often workers announce their presence (for GET /readyz)."
    )
    worker_presence_ttl_seconds: float = Field(
        10.0, description="A worker not heard from for this long is not counted as ready."
    )
    model_poll_seconds: float = Field(
        2.0,
        gt=0,
        description=(
            "How often serving processes check the production alias even when no promotion "
            "was announced over Redis (the fallback for a missed announcement)."
        ),
    )
    model_version_cache_size: int = Field(
        4,
        ge=1,
        description=(
            "Versions other than production each prediction worker keeps loaded for "
            "version-specific inference (/v2/models/death_yn/versions/{version}/infer); "
            "the least recently used is dropped beyond it."
        ),
    )
    model_retention: int = Field(
        0,
        ge=0,
        description=(
            "Versions a training keeps besides production and the rollback history: after "
            "each new version, older ones past this many are deleted. 0: keep every version."
        ),
    )
    log_format: Literal["auto", "json", "text"] = Field(
        "auto", description="Log lines: `json`, `text`, or `auto` (text on a terminal, else JSON)."
    )
    api_key: SecretStr | None = Field(
        None,
        description="When set, endpoints that change state need it (Bearer or X-API-Key header).",
    )
    api_key_required_for_reads: bool = Field(
        False, description="Also require API_KEY to read and predict (/healthz, /readyz stay open)."
    )
    max_json_body_bytes: int = Field(
        4 * 1024 * 1024,
        description="Largest request body accepted outside uploads (413 beyond it).",
    )
    cors_origins: str = Field(
        "", description="Comma-separated origins allowed by CORS; empty: CORS off."
    )
    test_training_delay_seconds: float = Field(
        0.0,
        ge=0,
        description=(
            "Tests only (keep 0): a training pauses this long after each chunk it reads, so a "
            "test can watch, cancel, time out or kill one in progress on a machine of any speed."
        ),
    )

    @property
    def api_key_value(self) -> str | None:
        """The key, or None when unset or empty (``API_KEY=`` in a copied .env.example)."""
        value = self.api_key.get_secret_value() if self.api_key is not None else ""
        return value or None

    @property
    def cors_origin_list(self) -> list[str]:
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
