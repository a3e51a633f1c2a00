"""Explanations: exact interventional Shapley values in log-odds, checked against their
definition computed the slow way, and against the properties the issue names."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from shared.data.loader import decode_features
from shared.data.schema import FEATURE_COLUMNS
from shared.errors import ExplanationUnavailableError
from shared.model.explain import (
    DISTRIBUTION_ATTRIBUTE,
    Explainer,
    attach_distribution,
    distribution_of,
)
from shared.model.scoring import EXPLAIN, Scorer, encode_codes, score_batch
from shared.model.table import N_COMBINATIONS, SHAPE, all_combinations, tabulate
from tests.shared.model.conftest import PARAMS

N = len(FEATURE_COLUMNS)


@pytest.fixture(scope="module")
def scorers(fitted: dict[str, Any]) -> dict[str, Scorer]:
    return {name: Scorer("v1", pipeline) for name, pipeline in fitted.items()}


@pytest.mark.parametrize("name", list(PARAMS))
def test_baseline_plus_contributions_is_the_log_odds_of_every_combination(
    fitted: dict[str, Any], scorers: dict[str, Scorer], name: str
) -> None:
    codes = all_combinations()
    baseline, contributions = scorers[name].explain(codes)
    with threadpool_limits(1):
        log_odds = fitted[name].decision_function(decode_features(codes))
    assert contributions.shape == (N_COMBINATIONS, N)
    np.testing.assert_allclose(baseline + contributions.sum(axis=1), log_odds, rtol=0, atol=1e-9)
    probability = scorers[name].predict_proba(codes)
    moderate = (probability > 1e-6) & (probability < 1 - 1e-6)  # where logit(p) is exact enough
    np.testing.assert_allclose(
        baseline + contributions[moderate].sum(axis=1),
        np.log(probability[moderate] / (1 - probability[moderate])),
        rtol=0,
        atol=1e-9,
    )


def test_the_baseline_is_the_mean_log_odds_of_the_training_cases(
    fitted: dict[str, Any], scorers: dict[str, Scorer]
) -> None:
    stored = getattr(fitted["boosting"], DISTRIBUTION_ATTRIBUTE)
    with threadpool_limits(1):
        log_odds = fitted["boosting"].decision_function(decode_features(stored["codes"]))
    expected = np.average(log_odds, weights=stored["rows"])
    assert stored["rows"].sum() > 2 * len(stored["codes"])  # cases, not combinations
    assert scorers["boosting"].explain(all_combinations()[:1])[0] == pytest.approx(
        expected, abs=1e-9
    )


@pytest.mark.parametrize("name", ["logistic", "logistic_balanced"])
def test_a_logistic_model_credits_a_changed_feature_with_its_coefficient_difference(
    fitted: dict[str, Any], scorers: dict[str, Scorer], name: str
) -> None:
    """Two records that differ in one feature differ only in that feature's contribution, by
    exactly the difference of the two values' coefficients."""
    pipeline = fitted[name]
    encoder = pipeline.named_steps["onehot"]
    coef = pipeline.named_steps["logisticregression"].coef_[0]
    offsets = np.cumsum([0] + [len(c) for c in encoder.categories_])
    rng = np.random.default_rng(11)
    first = all_combinations()[rng.integers(0, N_COMBINATIONS, 300)]
    for j in range(N):
        second = first.copy()
        second[:, j] = (first[:, j] + rng.integers(1, SHAPE[j], len(first))) % SHAPE[j]
        _, a = scorers[name].explain(first)
        _, b = scorers[name].explain(second)
        others = [k for k in range(N) if k != j]
        np.testing.assert_allclose(a[:, others], b[:, others], rtol=0, atol=1e-9)
        expected = coef[offsets[j] + first[:, j]] - coef[offsets[j] + second[:, j]]
        np.testing.assert_allclose(a[:, j] - b[:, j], expected, rtol=0, atol=1e-9)


def brute_force_shapley(
    pipeline: Any, background: np.ndarray, weights: np.ndarray, record: np.ndarray
) -> tuple[float, np.ndarray]:
    """The definition, computed the slow way: v(S) averages the pipeline's own log-odds over
    the background rows with the record's values put in for S; each feature's value is its
    mean marginal contribution over all 5,040 orders of the seven features."""
    subsets = list(itertools.product([False, True], repeat=N))
    rows = np.array([np.where(mask, record, z) for mask in subsets for z in background])
    log_odds = pipeline.decision_function(decode_features(rows.astype(np.int8)))
    per_subset = log_odds.reshape(len(subsets), len(background)) @ (weights / weights.sum())
    value = dict(zip(subsets, per_subset.tolist(), strict=True))
    phi = np.zeros(N)
    orders = list(itertools.permutations(range(N)))
    for order in orders:
        present = [False] * N
        for i in order:
            before = value[tuple(present)]
            present[i] = True
            phi[i] += value[tuple(present)] - before
    return value[(False,) * N], phi / len(orders)


@pytest.mark.parametrize("name", ["boosting_shallow_balanced", "logistic"])
def test_the_values_are_the_shapley_values_of_the_definition(
    fitted: dict[str, Any], name: str
) -> None:
    """On a tiny training distribution (four combinations, uneven counts), where the
    definition can be computed case by case."""
    pipeline = copy.copy(fitted[name])
    rng = np.random.default_rng(5)
    background = all_combinations()[rng.choice(N_COMBINATIONS, 4, replace=False)]
    weights = np.array([3.0, 1.0, 2.0, 5.0])
    attach_distribution(pipeline, background, weights.astype(np.int64))
    scorer = Scorer("v9", pipeline)
    records = np.vstack([background[:1], all_combinations()[rng.integers(0, N_COMBINATIONS, 3)]])
    baseline, contributions = scorer.explain(records)
    with threadpool_limits(1):
        for record, mine in zip(records, contributions, strict=True):
            expected_baseline, expected = brute_force_shapley(pipeline, background, weights, record)
            assert baseline == pytest.approx(expected_baseline, abs=1e-9)
            np.testing.assert_allclose(mine, expected, rtol=0, atol=1e-9)
    # the explanation depends on the distribution: the session's own is another game
    assert not np.allclose(Scorer("v1", fitted[name]).explain(records)[1], contributions)


def test_a_version_without_its_distribution_cannot_explain(fitted: dict[str, Any]) -> None:
    old = copy.copy(fitted["logistic"])
    delattr(old, DISTRIBUTION_ATTRIBUTE)  # as saved before explanations existed
    assert distribution_of(old) is None
    scorer = Scorer("v2", old)
    assert scorer.table is not None and scorer.explainer is None
    with pytest.raises(ExplanationUnavailableError, match=r"v2 .*training distribution"):
        scorer.explain(all_combinations()[:1])
    # it still scores; only the request that asks for an explanation is refused
    codes = encode_codes(all_combinations()[:2])
    replies = score_batch(scorer, [["a", codes], ["b", codes, EXPLAIN]])
    assert len(replies[0]["probabilities"]) == 2
    assert replies[1]["error"]["code"] == "explanation_unavailable"


@pytest.mark.parametrize(
    "stored",
    [
        "not a dict",
        {"codes": np.zeros((0, N), np.int8), "rows": np.zeros(0, np.int64)},
        {"codes": np.full((1, N), 11, np.int8), "rows": np.ones(1, np.int64)},
        {"codes": np.zeros((2, N), np.int8), "rows": np.ones(1, np.int64)},
        {"codes": np.zeros((1, N), np.int8), "rows": np.zeros(1, np.int64)},
    ],
)
def test_a_malformed_distribution_is_no_distribution(stored: Any) -> None:
    class Holder:
        pass

    holder = Holder()
    setattr(holder, DISTRIBUTION_ATTRIBUTE, stored)
    assert distribution_of(holder) is None


def test_explaining_costs_one_lookup_and_its_memory_is_stated(
    fitted: dict[str, Any], scorers: dict[str, Scorer]
) -> None:
    explainer = scorers["boosting"].explainer
    assert explainer is not None
    assert explainer.nbytes == N_COMBINATIONS * N * 8  # 5.3 MB, as the README says
    table = tabulate(fitted["boosting"])
    distribution = distribution_of(fitted["boosting"])
    assert table is not None and distribution is not None
    rebuilt = Explainer.build(table.log_odds, distribution)
    np.testing.assert_array_equal(rebuilt.contributions, explainer.contributions)
