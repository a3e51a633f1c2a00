"""Two versions side by side (``GET /models/{a}/compare/{b}``)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from api.schemas.models import DatasetRef, Version
from shared.data.schema import FEATURE_COLUMNS


class MetricDeltaOut(BaseModel):
    a: float | None = Field(description="a's value; null when undefined or not recorded.")
    b: float | None
    difference: float | None = Field(description="b - a; null when either is null.")
    better: Literal["a", "b", "same"] | None = Field(
        description="Which version the difference favours (for log_loss and brier, less is "
        "better); null for a metric with no better direction (a rate, a count) or a null value."
    )


class ComparedVersion(BaseModel):
    version: Version
    estimator: str | None = Field(None, description="null: saved before estimators existed.")
    dataset: DatasetRef | None = None
    created_at: datetime | None = None
    evaluated_by: str = Field(
        description="How its 95,040 probabilities were computed: `coefficients`, `trees`, "
        "`pipeline` (its decision_function) or `predict_proba` (a pipeline of no known shape)."
    )


class LargestDifferenceAt(BaseModel):
    """A feature combination, as the CDC strings of the seven features."""

    current_status: str
    sex: str
    age_group: str
    race_ethnicity_combined: str
    hosp_yn: str
    icu_yn: str
    medcond_yn: str


assert tuple(LargestDifferenceAt.model_fields) == FEATURE_COLUMNS


class DisagreementOut(BaseModel):
    combinations: int = Field(ge=0, description="Combinations whose labels differ.")
    total: int = Field(description="Every combination of the seven features: 95,040.")
    share: float = Field(ge=0, le=1, description="combinations / total.")
    mass_under_a: float | None = Field(
        ge=0,
        le=1,
        description="The share of a's training cases whose labels differ between the two; "
        "null for a version saved without its training distribution.",
    )
    mass_under_b: float | None = Field(ge=0, le=1, description="The same, under b's cases.")
    largest_difference: float = Field(
        ge=0, le=1, description="The largest |P_b - P_a| over every combination."
    )
    largest_at: LargestDifferenceAt | None = Field(
        description="Where it is (the first such combination); null when the two agree "
        "exactly everywhere."
    )
    probability_a: float | None = Field(description="P_a there.")
    probability_b: float | None = Field(description="P_b there.")
    seconds: float = Field(description="Time to load both versions and compare them.")


class ComparisonOut(BaseModel):
    """Two versions side by side. Every difference is `b - a`."""

    a: ComparedVersion
    b: ComparedVersion
    difference: Literal["b - a"] = Field(description="What every difference is.")
    same_test_rows: bool = Field(
        description="Whether both were evaluated on the same held-out rows (the same file, "
        "split the same way): otherwise a metric's difference is also the data's."
    )
    metrics: dict[str, MetricDeltaOut] = Field(
        description="The key metrics (those of GET /models), held-out."
    )
    group_metrics: dict[str, dict[str, dict[str, MetricDeltaOut]]] = Field(
        description="Per group column (sex, age_group, race_ethnicity_combined), per value "
        "either version has, per metric."
    )
    disagreement: DisagreementOut = Field(
        description="Labels (probability >= 0.5, as POST /predict) compared on every "
        "combination of the seven features."
    )
    cached: bool = Field(
        description="Whether the disagreement was computed for an earlier request (versions "
        "never change, so it is still exact)."
    )
