"""The model registry: versions, their metadata, and which one serves."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.base import StrictModel
from shared.registry.versions import VERSION_PATTERN


class DatasetRef(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str | None = None
    size_bytes: int | None = None
    sha256: str | None = None


class KeyMetrics(BaseModel):
    roc_auc: float | None = None
    accuracy: float | None = None
    balanced_accuracy: float | None = None
    precision: float | None = None
    recall: float | None = None
    f1: float | None = None
    log_loss: float | None = None
    brier: float | None = None


class Gate(BaseModel):
    passed: bool
    reasons: list[str] = Field(default_factory=list)


Version = Annotated[str, Field(pattern=VERSION_PATTERN)]


class ModelSummary(BaseModel):
    version: Version
    created_at: datetime | None = None
    estimator: str | None = Field(
        None,
        description="null: saved before the estimator could be chosen (a logistic regression).",
    )
    dataset: DatasetRef | None = None
    rows: dict[str, int] | None = None
    metrics: KeyMetrics | None = None
    gate: Gate | None = None
    promoted: bool = Field(description="Whether this version is the production one.")


#: ``GET /models``: versions per page by default, and at most.
MODELS_PAGE_DEFAULT, MODELS_PAGE_MAX = 20, 100


class ModelList(BaseModel):
    """One page, newest first; ``next`` is the next page's path and query (null: the last)."""

    production: Version | None
    history: list[Version] = Field(description="Oldest first; with production: undeletable.")
    versions: list[ModelSummary] = Field(description="This page, newest first.")
    total: int = Field(description="Versions in the registry, on every page.")
    limit: int
    next_cursor: Version | None = Field(description="The next page's `cursor`; null: last page.")
    next: str | None


class ModelDeleted(BaseModel):
    deleted: Version


class ModelMetadata(BaseModel):
    """A version's metadata.json as saved (only the main keys are listed here)."""

    model_config = ConfigDict(extra="allow")

    version: str
    created_at: str | None = None
    dataset: dict[str, Any] | None = None
    rows: dict[str, Any] | None = None
    params: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    group_metrics: dict[str, Any] | None = None
    gate: dict[str, Any] | None = None


class PromoteRequest(StrictModel):
    force: bool = Field(False, description="Promote even if the version failed the gate.")


class ProductionOut(BaseModel):
    production: Version | None
    history: list[Version] = Field(description="Previous production versions, oldest first.")
