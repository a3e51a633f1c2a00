"""Exact Shapley values of the seven features, in log-odds, for every combination at once.

What a contribution means. ``f(x)`` is the model's log-odds for a record ``x``. For a set ``S``
of features, ``v_S(x)`` is the average log-odds over the training data's cases when each case
keeps its own values of the features outside ``S`` and takes ``x``'s values for those in ``S``:
the interventional (marginal) value function, against the training distribution. A feature's
contribution is its Shapley value in that game: its average marginal effect
``v_{S+i}(x) - v_S(x)`` over the orders in which features could be added. The baseline is
``v_{}``, the training cases' mean log-odds; the baseline plus the seven contributions is
``v_{all}(x) = f(x)``, the record's log-odds. For a logistic regression, ``f`` is a sum of one
term per feature, and a contribution is that term minus its mean over the training cases: two
records differing in one feature differ in that feature's contribution only, by exactly the
difference of the two coefficients.

Why it is cheap. The distribution is the training side's counts per combination, kept with the
version (:func:`attach_distribution`), and the model is its table of 95,040 log-odds
(:mod:`shared.model.table`). ``v_S`` depends on ``x``'s features in ``S`` only, and is the
model's table contracted with the marginal of the features outside ``S``: 128 coalitions, one
pass over the table each. The contributions of every combination are then a fixed linear mix
of those 128 tables, precomputed when a version loads: an explained record is one lookup of
seven numbers. Memory: 95,040 x 7 doubles, 5.3 MB per version held.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from shared.model.table import N_COMBINATIONS, SHAPE, combination_index

__all__ = [
    "DISTRIBUTION_ATTRIBUTE",
    "Explainer",
    "attach_distribution",
    "coalition_values",
    "distribution_of",
    "shapley_weights",
]

#: Where a fitted pipeline carries its training distribution (an attribute pickled with it).
DISTRIBUTION_ATTRIBUTE = "training_distribution_"
_N_FEATURES = len(SHAPE)


def attach_distribution(pipeline: Any, codes: np.ndarray, rows: np.ndarray) -> None:
    """Keep the training side's distribution with the fitted pipeline: its distinct
    combinations (int8 codes) and the number of cases of each. Plain arrays in a dict, so an
    artifact never depends on a class of this project to unpickle."""
    setattr(
        pipeline,
        DISTRIBUTION_ATTRIBUTE,
        {
            "codes": np.ascontiguousarray(codes, dtype=np.int8),
            "rows": np.asarray(rows, dtype=np.int64),
        },
    )


def distribution_of(pipeline: Any) -> np.ndarray | None:
    """The training distribution of a pipeline as probabilities over the 95,040 combinations
    (shaped like the table), or None for a pipeline saved without one."""
    stored = getattr(pipeline, DISTRIBUTION_ATTRIBUTE, None)
    if not isinstance(stored, dict):
        return None
    codes, rows = stored.get("codes"), stored.get("rows")
    if not isinstance(codes, np.ndarray) or not isinstance(rows, np.ndarray):
        return None
    if codes.ndim != 2 or codes.shape[1] != _N_FEATURES or len(rows) != len(codes):
        return None
    if len(codes) == 0 or (codes < 0).any() or (codes >= np.array(SHAPE)).any():
        return None
    counts = np.bincount(
        combination_index(codes), weights=rows.astype(np.float64), minlength=N_COMBINATIONS
    )
    total = counts.sum()
    if not total > 0:
        return None
    return (counts / total).reshape(SHAPE)


def shapley_weights(n: int = _N_FEATURES) -> np.ndarray:
    """``w[s]``: the weight of a marginal effect ``v_{S+i} - v_S`` with ``|S| = s``."""
    return np.array(
        [math.factorial(s) * math.factorial(n - 1 - s) / math.factorial(n) for s in range(n)]
    )


def coalition_values(log_odds: np.ndarray, distribution: np.ndarray) -> list[np.ndarray]:
    """``v_S`` for every coalition ``S`` (bit ``j`` of the index: feature ``j`` is in ``S``),
    each an array of the table's rank, of size 1 along the features outside ``S``: the table
    contracted with the distribution's marginal over the features outside ``S``."""
    grid = log_odds.reshape(SHAPE)
    # marginals[mask]: the distribution summed over the features in mask, each from a parent
    marginals = [distribution]
    for mask in range(1, 1 << _N_FEATURES):
        last = mask.bit_length() - 1
        marginals.append(marginals[mask ^ (1 << last)].sum(axis=last, keepdims=True))
    values = []
    for mask, marginal in enumerate(marginals):
        outside = tuple(j for j in range(_N_FEATURES) if not mask >> j & 1)
        weights = marginal.reshape([SHAPE[j] for j in outside])
        value = np.tensordot(grid, weights, axes=(outside, tuple(range(len(outside)))))
        values.append(value.reshape([n if mask >> j & 1 else 1 for j, n in enumerate(SHAPE)]))
    return values


def _mix(values: list[np.ndarray]) -> np.ndarray:
    """The contributions of every combination: ``phi_i = sum over S of c_S[i] * v_S``, where
    ``c_S[i]`` is ``w[|S| - 1]`` for ``i`` in ``S`` and ``-w[|S|]`` otherwise (the Shapley
    formula, regrouped by coalition). Each coalition's term lives on its own features only, so
    terms are summed upwards from small coalitions into larger ones (each into the coalition
    with one more feature, the smallest missing) rather than each spread over the whole table:
    a few million additions instead of tens of millions."""
    weights = shapley_weights()
    full = (1 << _N_FEATURES) - 1
    terms = {}
    for mask, value in enumerate(values):
        size = mask.bit_count()
        inside = np.array([mask >> i & 1 == 1 for i in range(_N_FEATURES)])
        outside_weight = -weights[size] if size < _N_FEATURES else 0.0
        coefficients = np.where(inside, weights[size - 1] if size else 0.0, outside_weight)
        terms[mask] = value[..., None] * coefficients
    by_size = sorted(range(1 << _N_FEATURES), key=lambda mask: mask.bit_count())
    smallest_first = sorted(range(_N_FEATURES), key=lambda j: SHAPE[j])
    for mask in by_size[:-1]:
        grow = next(j for j in smallest_first if not mask >> j & 1)
        parent = mask | 1 << grow
        terms[parent] = terms[parent] + terms.pop(mask)
    return terms[full].reshape(N_COMBINATIONS, _N_FEATURES)


@dataclass(frozen=True)
class Explainer:
    """A version's contributions for every combination, and its baseline."""

    #: The training cases' mean log-odds.
    baseline: float
    #: (95,040, 7): the seven contributions of each combination, in FEATURE_COLUMNS order.
    contributions: np.ndarray

    @classmethod
    def build(cls, log_odds: np.ndarray, distribution: np.ndarray) -> Explainer:
        values = coalition_values(log_odds, distribution)
        return cls(baseline=float(values[0].reshape(())), contributions=_mix(values))

    def explain(self, index: np.ndarray) -> np.ndarray:
        """The contributions of the combinations at ``index`` (see :func:`combination_index`)."""
        return self.contributions[index]

    @property
    def nbytes(self) -> int:
        return int(self.contributions.nbytes)
