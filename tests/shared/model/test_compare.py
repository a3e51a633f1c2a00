"""Two versions compared: their metrics side by side, and their predictions on every one of the
95,040 combinations (labels, training-distribution mass, the largest gap and where)."""

from __future__ import annotations

import copy
import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from shared.data.loader import decode_features
from shared.data.schema import FEATURE_COLUMNS, VOCABULARY
from shared.model.compare import (
    ComparisonCache,
    compare_metrics,
    compare_versions,
    disagreement,
    same_test_rows,
)
from shared.model.explain import DISTRIBUTION_ATTRIBUTE, attach_distribution
from shared.model.pipeline import ModelParams, build_pipeline
from shared.model.table import N_COMBINATIONS, SHAPE, all_combinations, combination_index
from shared.registry.versions import ModelRegistry

N_COLUMNS = sum(SHAPE)  # one-hot columns of the logistic pipeline


def known_logistic(coef: np.ndarray, intercept: float) -> Pipeline:
    """A logistic pipeline whose coefficients are ``coef`` (one per one-hot column)."""
    rng = np.random.default_rng(0)
    codes = all_combinations()[rng.choice(N_COMBINATIONS, 300, replace=False)]
    pipeline = build_pipeline(ModelParams())
    with threadpool_limits(1):
        pipeline.fit(decode_features(codes), np.arange(300) % 2)
    model = pipeline.named_steps["logisticregression"]
    model.coef_ = coef.reshape(1, -1).copy()
    model.intercept_ = np.array([intercept])
    return pipeline


def brute_force_labels(coef: np.ndarray, intercept: float) -> list[bool]:
    """Each combination's label, one at a time, from the coefficients alone."""
    offsets = np.concatenate([[0], np.cumsum(SHAPE)[:-1]]).tolist()
    weights = coef.tolist()
    labels = []
    for codes in itertools.product(*(range(n) for n in SHAPE)):
        logit = intercept + sum(weights[o + c] for o, c in zip(offsets, codes, strict=True))
        labels.append(1 / (1 + math.exp(-logit)) >= 0.5)
    return labels


@dataclass(frozen=True)
class KnownPair:
    coef_a: np.ndarray
    intercept_a: float
    coef_b: np.ndarray
    intercept_b: float
    #: Each combination's label under a and under b, counted one by one.
    labels_a: list[bool]
    labels_b: list[bool]

    def pipelines(self) -> tuple[Pipeline, Pipeline]:
        return known_logistic(self.coef_a, self.intercept_a), known_logistic(
            self.coef_b, self.intercept_b
        )


@pytest.fixture(scope="module")
def known_pair() -> KnownPair:
    rng = np.random.default_rng(11)
    coef_a = rng.normal(0, 1, N_COLUMNS)
    coef_b = coef_a + rng.normal(0, 0.4, N_COLUMNS)
    labels_a, labels_b = brute_force_labels(coef_a, -0.3), brute_force_labels(coef_b, 0.1)
    return KnownPair(coef_a, -0.3, coef_b, 0.1, labels_a, labels_b)


@pytest.mark.parametrize("name", ["logistic", "boosting"])
def test_a_version_compared_with_itself_differs_nowhere(fitted: dict[str, Any], name: str) -> None:
    pipeline = fitted[name]
    found = disagreement(pipeline, copy.deepcopy(pipeline))  # not the same object: computed
    assert (found.combinations, found.share) == (0, 0.0)
    assert found.mass_under_a == found.mass_under_b == 0.0
    assert found.largest_difference == 0.0
    assert found.largest_at is None and found.probability_a is None
    assert found.method_a == found.method_b == ("coefficients" if name == "logistic" else "trees")


def test_the_disagreement_share_is_a_brute_force_count(known_pair: KnownPair) -> None:
    found = disagreement(*known_pair.pipelines())
    labels_a, labels_b = known_pair.labels_a, known_pair.labels_b
    count = sum(x != y for x, y in zip(labels_a, labels_b, strict=True))
    assert 0 < count < N_COMBINATIONS  # the pair was chosen to disagree somewhere, not everywhere
    assert found.combinations == count
    assert found.share == count / N_COMBINATIONS
    # neither carries a training distribution (fitted by hand): no mass to speak of
    assert found.mass_under_a is None and found.mass_under_b is None


def test_the_mass_shares_by_hand_on_a_tiny_distribution(known_pair: KnownPair) -> None:
    labels_a, labels_b = known_pair.labels_a, known_pair.labels_b
    differ = [i for i in range(N_COMBINATIONS) if labels_a[i] != labels_b[i]]
    agree = [i for i in range(N_COMBINATIONS) if labels_a[i] == labels_b[i]]
    x1, x3, x2, x4 = differ[0], differ[-1], agree[0], agree[-1]

    def codes(*indices: int) -> np.ndarray:
        return np.column_stack(np.unravel_index(np.array(indices), SHAPE)).astype(np.int8)

    a, b = known_pair.pipelines()
    # a's cases: 3 where they differ, 1 where they agree -> 3/4
    attach_distribution(a, codes(x1, x2), np.array([3, 1]))
    # b's cases: 1 + 1 where they differ, 2 where they agree -> 2/4
    attach_distribution(b, codes(x1, x3, x4), np.array([1, 1, 2]))
    found = disagreement(a, b)
    assert found.mass_under_a == pytest.approx(0.75, abs=1e-15)
    assert found.mass_under_b == pytest.approx(0.5, abs=1e-15)
    assert found.combinations == len(differ)


def test_the_largest_difference_is_where_the_pipelines_say(fitted: dict[str, Any]) -> None:
    a, b = fitted["logistic"], fitted["boosting"]
    found = disagreement(a, b)
    assert (found.method_a, found.method_b) == ("coefficients", "trees")
    assert 0 < found.combinations < N_COMBINATIONS
    assert 0 < found.mass_under_a < 1 and 0 < found.mass_under_b < 1  # type: ignore[operator]
    assert found.largest_at is not None and list(found.largest_at) == list(FEATURE_COLUMNS)
    frame = decode_features(
        np.array([[VOCABULARY[c].index(found.largest_at[c]) for c in FEATURE_COLUMNS]])
    )
    with threadpool_limits(1):
        p_a, p_b = a.predict_proba(frame)[0, 1], b.predict_proba(frame)[0, 1]
        every = decode_features(all_combinations())
        gaps = np.abs(b.predict_proba(every)[:, 1] - a.predict_proba(every)[:, 1])
    assert found.probability_a == pytest.approx(p_a, abs=1e-12)
    assert found.probability_b == pytest.approx(p_b, abs=1e-12)
    assert found.largest_difference == pytest.approx(gaps.max(), abs=1e-12)
    index = combination_index(frame.apply(lambda s: s.map(VOCABULARY[s.name].index)).to_numpy())
    assert gaps[index[0]] == pytest.approx(gaps.max(), abs=1e-12)


def test_a_pipeline_of_unknown_shape_is_compared_through_predict_proba(
    fitted: dict[str, Any],
) -> None:
    known = fitted["logistic"]
    steps = copy.deepcopy(known).named_steps
    unknown = Pipeline([("encode", steps["onehot"]), ("model", steps["logisticregression"])])
    setattr(unknown, DISTRIBUTION_ATTRIBUTE, getattr(known, DISTRIBUTION_ATTRIBUTE))
    found = disagreement(known, unknown)
    assert (found.method_a, found.method_b) == ("coefficients", "predict_proba")
    assert found.combinations == 0 and found.mass_under_b == 0.0
    assert found.largest_difference <= 1e-12  # the table is predict_proba to 1e-12


def test_metrics_side_by_side_are_b_minus_a_with_the_better_side() -> None:
    a = {
        "metrics": {"roc_auc": 0.80, "log_loss": 0.30, "recall": None, "f1": 0.5},
        "group_metrics": {
            "sex": {"Male": {"rows": 10, "recall": 0.5, "positive_rate": 0.1}},
            "age_group": {"80+ Years": {"roc_auc": 0.7}, "0 - 9 Years": {"roc_auc": 0.6}},
        },
    }
    b = {
        "metrics": {"roc_auc": 0.75, "log_loss": 0.25, "recall": 0.4, "f1": 0.5},
        "group_metrics": {
            "sex": {"Male": {"rows": 12, "recall": 0.6, "positive_rate": 0.3}, "Female": {}},
        },
    }
    overall, groups = compare_metrics(a, b)
    assert overall["roc_auc"].difference == pytest.approx(-0.05)
    assert overall["roc_auc"].better == "a"
    assert overall["log_loss"].difference == pytest.approx(-0.05)
    assert overall["log_loss"].better == "b"  # less is better
    assert (overall["recall"].a, overall["recall"].b, overall["recall"].better) == (None, 0.4, None)
    assert overall["f1"].better == "same" and overall["f1"].difference == 0.0
    assert overall["brier"].a is None and overall["brier"].difference is None
    male = groups["sex"]["Male"]
    assert male["rows"].difference == 2 and male["rows"].better is None
    assert male["recall"].better == "b"
    assert (
        male["positive_rate"].difference == pytest.approx(0.2)
        and male["positive_rate"].better is None
    )
    assert list(groups["sex"]) == ["Female", "Male"]  # the vocabulary's order, both sides' groups
    assert list(groups["age_group"]) == ["0 - 9 Years", "80+ Years"]
    assert groups["age_group"]["80+ Years"]["roc_auc"].b is None
    assert groups["race_ethnicity_combined"] == {}


def test_same_test_rows_needs_the_same_file_and_split() -> None:
    meta = {"dataset": {"sha256": "ab"}, "split": {"test_size": 0.2, "random_state": 42}}
    assert same_test_rows(meta, copy.deepcopy(meta))
    assert not same_test_rows(meta, {**meta, "dataset": {"sha256": "cd"}})
    assert not same_test_rows(meta, {**meta, "split": {"test_size": 0.3, "random_state": 42}})
    assert not same_test_rows({}, {})


def test_registry_versions_are_compared_once_then_from_the_cache(
    fitted: dict[str, Any], registry: ModelRegistry
) -> None:
    metadata = {"dataset": {"name": "d.csv", "sha256": "ab"}, "metrics": {"roc_auc": 0.8}}
    v1 = registry.save_version(fitted["logistic"], {**metadata, "estimator": "logistic_regression"})
    v2 = registry.save_version(
        fitted["boosting"], {**metadata, "estimator": "hist_gradient_boosting"}
    )
    loads: list[str] = []

    def load(version: str) -> Any:
        loads.append(version)
        return registry.load(version)

    cache = ComparisonCache(size=1)
    first = compare_versions(v1, v2, load, cache)
    assert loads == ["v1", "v2"] and not first.cached
    assert first.disagreement.seconds > 0
    again = compare_versions(v1, v2, load, cache)
    assert loads == ["v1", "v2"] and again.cached and again.disagreement == first.disagreement
    body = again.as_dict()
    assert body["a"]["estimator"] == "logistic_regression" and body["b"]["evaluated_by"] == "trees"
    assert body["difference"] == "b - a" and body["disagreement"]["total"] == N_COMBINATIONS

    reverse = compare_versions(v2, v1, load, cache)  # another pair: computed, and evicts the first
    assert loads[2:] == ["v2", "v1"] and not reverse.cached
    assert reverse.disagreement.combinations == first.disagreement.combinations
    assert reverse.disagreement.mass_under_a == first.disagreement.mass_under_b
    compare_versions(v1, v2, load, cache)
    assert loads[4:] == ["v1", "v2"] and len(cache) == 1

    itself = compare_versions(v1, v1, load)
    assert loads[6:] == ["v1"] and itself.disagreement.combinations == 0
