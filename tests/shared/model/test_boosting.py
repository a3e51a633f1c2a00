"""Gradient boosting on counts: the same fit as on raw rows where the objectives are the same,
its parameters validated per estimator, and saved, gated and served like the regression."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from shared.data.loader import EncodedCsv, decode_features
from shared.data.schema import FEATURE_COLUMNS, LABEL_COLUMN, VOCABULARY
from shared.errors import InvalidParameterError
from shared.model.pipeline import BoostingParams, ModelParams, build_pipeline, estimator_params
from shared.model.scoring import Scorer
from shared.model.table import SHAPE, all_combinations
from shared.model.training import SplitParams, aggregate, fit_counts, register_run, train_model
from shared.model.training import test_side_mask as on_test_side
from shared.registry.versions import ModelRegistry
from tests.conftest import MakeDataset


@pytest.fixture(scope="module")
def even_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16,000 cases over 3 values of each feature (2,187 combinations, each about 7 times),
    the outcome a logistic function with an interaction. No category is rare anywhere: see
    the test below for why that matters."""
    rng = np.random.default_rng(5)
    codes = rng.integers(0, 3, size=(16_000, len(FEATURE_COLUMNS)))
    logit = -0.5 + codes @ np.array([0.3, -0.4, 0.8, 0.2, 0.6, -0.7, 0.5])
    logit -= 0.6 * codes[:, 2] * codes[:, 4]
    deaths = rng.random(len(codes)) < 1 / (1 + np.exp(-logit))
    path = tmp_path_factory.mktemp("even") / "even.csv"
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow([*FEATURE_COLUMNS, LABEL_COLUMN])
        for row, death in zip(codes, deaths, strict=True):
            values = [VOCABULARY[col][code] for col, code in zip(FEATURE_COLUMNS, row, strict=True)]
            writer.writerow([*values, "Yes" if death else "No"])
    return path


def raw_training_rows(path: Path, split: SplitParams) -> tuple[np.ndarray, np.ndarray]:
    codes, labels = [], []
    for chunk in EncodedCsv(path, chunk_rows=4096):
        keep = (chunk.labels >= 0) & ~on_test_side(chunk.first_row, len(chunk.labels), split)
        codes.append(chunk.features[keep])
        labels.append(chunk.labels[keep])
    return np.concatenate(codes), np.concatenate(labels)


@pytest.mark.parametrize("class_weight", [None, "balanced"])
def test_the_fit_on_counts_equals_the_fit_on_raw_rows(even_file: Path, class_weight) -> None:
    """Same split, early stopping off, min_samples_leaf=1 (the project's fixed settings), and
    trees of depth 3. scikit-learn also counts rows, not weights, in two places the objective
    does not say: a category whose share of a node times the node's rows is under 10
    (``MIN_CAT_SUPPORT``) is left out of that node's categorical split, and a category never
    seen in training goes to the child with more rows. So the fits are the same where no
    category is that rare in any node (this file, shallow trees), compared on the
    combinations of categories seen in training; the README says what differs otherwise."""
    params = BoostingParams(max_iter=60, max_depth=3, class_weight=class_weight)
    split = SplitParams(test_size=0.25, random_state=3)
    with threadpool_limits(1):
        train, _test = aggregate(EncodedCsv(even_file, chunk_rows=3000), split)
        on_counts, _ = fit_counts(train, params)
        codes, labels = raw_training_rows(even_file, split)
        on_rows = build_pipeline(params)
        if class_weight == "balanced":  # scikit-learn's own, on rows, is the reference
            on_rows.set_params(histgradientboostingclassifier__class_weight="balanced")
        on_rows.fit(decode_features(codes), labels)
        seen = all_combinations()
        seen = seen[(seen < 3).all(axis=1)]
        frame = decode_features(seen)
        from_counts = on_counts.predict_proba(frame)[:, 1]
        from_rows = on_rows.predict_proba(frame)[:, 1]
    assert len(train.codes) < len(codes) / 2  # the weights do real work
    assert len(seen) == 3 ** len(SHAPE)
    np.testing.assert_allclose(from_counts, from_rows, rtol=0, atol=1e-6)
    assert from_counts.std() > 0.1  # a model that learned, not two constants


@pytest.mark.parametrize(
    ("estimator", "values", "field", "message"),
    [
        ("random_forest", {}, "estimator", "not one of"),
        ("hist_gradient_boosting", {"C": 1.0}, "params.C", "not a parameter"),
        ("logistic_regression", {"learning_rate": 0.1}, "params.learning_rate", "not a param"),
        ("hist_gradient_boosting", {"min_samples_leaf": 20}, "params.min_samples_leaf", "counts"),
        ("hist_gradient_boosting", {"early_stopping": True}, "params.early_stopping", "fixed"),
        ("hist_gradient_boosting", {"learning_rate": 0.0}, "learning_rate", "greater than 0"),
        ("hist_gradient_boosting", {"max_iter": 501}, "max_iter", "between 1 and 500"),
        ("hist_gradient_boosting", {"max_leaf_nodes": 65}, "max_leaf_nodes", "2 and 64"),
        ("hist_gradient_boosting", {"max_depth": 0}, "max_depth", "null or between"),
        ("hist_gradient_boosting", {"l2_regularization": -1.0}, "l2_regularization", "between"),
        ("hist_gradient_boosting", {"class_weight": "heavy"}, "class_weight", "balanced"),
        ("logistic_regression", {"C": float("inf")}, "C", "finite"),
    ],
)
def test_parameters_are_validated_per_estimator_naming_the_field(
    estimator: str, values: dict[str, object], field: str, message: str
) -> None:
    with pytest.raises(InvalidParameterError, match=message) as caught:
        estimator_params(estimator, values)
    assert caught.value.details["field"] == field
    assert caught.value.status_code == 422


def test_each_estimator_gets_its_own_defaults() -> None:
    assert estimator_params("logistic_regression") == ModelParams()
    assert estimator_params("hist_gradient_boosting", {"max_iter": 7}) == BoostingParams(max_iter=7)


def test_a_boosting_run_is_saved_gated_and_served_like_a_regression(
    make_dataset: MakeDataset, registry: ModelRegistry
) -> None:
    with threadpool_limits(1):
        run = train_model(make_dataset(20_000, 7), BoostingParams(max_iter=30))
    metadata = run.metadata
    assert metadata["estimator"] == "hist_gradient_boosting"
    assert metadata["params"] == BoostingParams(max_iter=30).as_dict()
    assert metadata["metrics"]["roc_auc"] > 0.8 and run.gate.passed
    assert set(metadata["group_metrics"]) == {"sex", "age_group", "race_ethnicity_combined"}
    outcome = register_run(registry, run, promote=True)
    assert outcome.promoted
    saved = registry.get("v1").metadata
    assert saved["estimator"] == "hist_gradient_boosting"
    loaded = registry.load("v1")  # the training distribution travels inside the artifact
    scorer = Scorer("v1", loaded)
    assert scorer.table is not None and scorer.table.method == "trees"
    assert scorer.explainer is not None
    codes = all_combinations()[::997]
    expected = run.pipeline.predict_proba(decode_features(codes))[:, 1]
    np.testing.assert_allclose(scorer.predict_proba(codes), expected, rtol=0, atol=1e-12)
