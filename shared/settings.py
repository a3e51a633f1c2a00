"""One settings class, read from the environment by every process (API, workers, CLI)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every field has a default so that a fresh clone runs with no configuration at all."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    models_dir: Path = Field(Path("models"), description="Root folder of the model registry.")
    data_dir: Path = Field(Path("data"), description="Folder that holds the datasets.")
    default_dataset: str = Field(
        "synthetic_default.csv", description="Dataset used when a training names none."
    )
    default_dataset_rows: int = Field(
        200_000, description="Rows of the synthetic default dataset made on first use."
    )
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0", description="Redis URL: Celery broker, results and job records."
    )
    host: str = Field("127.0.0.1", description="Address the API listens on.")
    port: int = Field(8000, description="Port the API listens on.")
    log_level: str = Field("INFO", description="Log level of every process.")
    min_roc_auc: float = Field(
        0.7, description="Quality gate: a run is promoted only if its ROC AUC reaches this."
    )
    chunk_rows: int = Field(
        250_000, description="Rows read per chunk when streaming a CSV (bounds memory)."
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
