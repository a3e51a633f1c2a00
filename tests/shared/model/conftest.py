"""Fitted pipelines of both estimators, trained once per session and shared read-only by the
table, explanation and scoring tests."""

from __future__ import annotations

from typing import Any

import pytest
from threadpoolctl import threadpool_limits

from shared.model.pipeline import BoostingParams, EstimatorParams, ModelParams
from shared.model.training import train_model
from tests.conftest import MakeDataset

#: One of each estimator with its defaults, and a second of each with other settings.
PARAMS: dict[str, EstimatorParams] = {
    "logistic": ModelParams(),
    "logistic_balanced": ModelParams(C=0.05, class_weight="balanced"),
    "boosting": BoostingParams(),
    "boosting_shallow_balanced": BoostingParams(
        max_iter=40, max_depth=3, learning_rate=0.3, l2_regularization=1.0, class_weight="balanced"
    ),
}


@pytest.fixture(scope="session")
def fitted(make_dataset: MakeDataset) -> dict[str, Any]:
    """name -> fitted pipeline (carrying its training distribution), on 20,000 synthetic rows.
    One thread: scikit-learn's OpenMP threads only spin on a shared machine."""
    data = make_dataset(20_000, 7)
    with threadpool_limits(1):
        return {name: train_model(data, params).pipeline for name, params in PARAMS.items()}
