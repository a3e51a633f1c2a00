"""Any model of the seven categorical features is a table of 95,040 numbers.

The features are categorical, so the whole feature space is 3 x 5 x 11 x 9 x 4 x 4 x 4 =
95,040 combinations. A serving process evaluates a version once on all of them when it loads
it, and then answers every record with one lookup: the combination's index is the mixed-radix
number its seven codes make (``STRIDES``), whatever the estimator.

How the table is computed depends on the pipeline's shape, but never what it holds: the log-odds
(the estimator's decision function) of each combination, and P(death_yn = Yes) as
``predict_proba`` computes it from them. Of a logistic regression, the log-odds are the
intercept plus one coefficient per column; of gradient boosting, its trees walked over
category sets (:mod:`shared.model.trees`); of any other known pipeline, or when either of those
does not agree with the pipeline on a sample of combinations, the pipeline's own
``decision_function`` on all of them (exact, only slower). A pipeline of unknown shape gets no
table: :class:`~shared.model.scoring.Scorer` asks it for every request, as before.

:func:`tabulate` is also what a comparison of two versions needs: both evaluated on the same
95,040 combinations, in the same order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import expit
from threadpoolctl import threadpool_limits

from shared.data.loader import decode_features
from shared.data.schema import FEATURE_COLUMNS, VOCABULARY
from shared.model.trees import boosting_log_odds

__all__ = [
    "N_COMBINATIONS",
    "SHAPE",
    "STRIDES",
    "ModelTable",
    "all_combinations",
    "combination_index",
    "tabulate",
]

log = logging.getLogger(__name__)

SHAPE: tuple[int, ...] = tuple(len(VOCABULARY[col]) for col in FEATURE_COLUMNS)
N_COMBINATIONS = int(np.prod(SHAPE))
#: Index of a combination = codes @ STRIDES (C order: the last column varies fastest).
STRIDES = np.array([int(np.prod(SHAPE[j + 1 :])) for j in range(len(SHAPE))], dtype=np.intp)
#: Combinations checked against ``predict_proba`` whenever a table is built a fast way.
_PROBE = 512
#: Agreement asked of a table with the pipeline's own ``predict_proba``.
TOLERANCE = 1e-12


def all_combinations() -> np.ndarray:
    """Every combination's codes, (95,040, 7) int8, row ``i`` being combination ``i``."""
    grids = np.indices(SHAPE, dtype=np.int8)
    return grids.reshape(len(SHAPE), -1).T.copy()


def combination_index(codes: np.ndarray) -> np.ndarray:
    """The table index of each row of (n, 7) codes (already checked against the vocabularies,
    as :func:`~shared.model.scoring.decode_codes` does)."""
    return np.asarray(codes, dtype=np.intp) @ STRIDES


@dataclass(frozen=True)
class ModelTable:
    """One version evaluated on every combination, indexed by :func:`combination_index`."""

    #: The estimator's decision function: log(P / (1 - P)).
    log_odds: np.ndarray
    #: P(death_yn = Yes), exactly as ``predict_proba`` computes it from the log-odds.
    probability: np.ndarray
    #: How it was computed: "coefficients", "trees" or "pipeline".
    method: str

    @property
    def nbytes(self) -> int:
        return int(self.log_odds.nbytes + self.probability.nbytes)


def tabulate(pipeline: Any) -> ModelTable | None:
    """The table of a pipeline of a known shape (see the module docstring); None otherwise."""
    kind = _known_shape(pipeline)
    if kind is None:
        return None
    steps = pipeline.named_steps
    if kind == "logistic_regression":
        log_odds = _logistic_log_odds(steps["onehot"], steps["logisticregression"])
        method = "coefficients"
    else:
        log_odds = boosting_log_odds(steps["histgradientboostingclassifier"])
        method = "trees"
    if log_odds is None or not _agrees(pipeline, log_odds):
        if log_odds is not None:
            log.warning("the %s table disagreed with predict_proba; using the pipeline", method)
        log_odds, method = _pipeline_log_odds(pipeline), "pipeline"
    return ModelTable(log_odds, expit(log_odds), method)


def _known_shape(pipeline: Any) -> str | None:
    steps = getattr(pipeline, "named_steps", None)
    if not isinstance(steps, dict) or len(steps) != 2:
        return None
    model = steps.get("logisticregression")
    if model is not None and "onehot" in steps:
        coef = getattr(model, "coef_", None)
        if coef is None or coef.shape[0] != 1:
            return None
        return "logistic_regression" if _binary(model) else None
    model = steps.get("histgradientboostingclassifier")
    encoder = steps.get("ordinal")
    if model is None or encoder is None or not _binary(model):
        return None
    # the trees are read by category code: the encoder must give each value its vocabulary code
    categories = [list(map(str, values)) for values in getattr(encoder, "categories_", [])]
    if categories != [list(VOCABULARY[col]) for col in FEATURE_COLUMNS]:
        return None
    return "hist_gradient_boosting"


def _binary(model: Any) -> bool:
    return [int(c) for c in getattr(model, "classes_", [])] == [0, 1]


def _logistic_log_odds(encoder: Any, model: Any) -> np.ndarray | None:
    """Intercept plus one coefficient per column; a value the encoder never saw adds 0, as its
    ``handle_unknown="ignore"`` does. Added in the order the pipeline's sparse product adds."""
    coef = model.coef_[0]
    per_column = []
    offset = 0
    for col, categories in zip(FEATURE_COLUMNS, encoder.categories_, strict=True):
        position = {str(value): offset + i for i, value in enumerate(categories)}
        table = np.zeros(len(VOCABULARY[col]))
        for code, value in enumerate(VOCABULARY[col]):
            if value in position:
                table[code] = coef[position[value]]
        per_column.append(table)
        offset += len(categories)
    if offset != len(coef):
        return None
    total = np.zeros(SHAPE)
    for j, table in enumerate(per_column):
        total = total + table.reshape([-1 if k == j else 1 for k in range(len(SHAPE))])
    return (total + float(model.intercept_[0])).reshape(-1)


def _pipeline_log_odds(pipeline: Any) -> np.ndarray:
    with threadpool_limits(1):
        frame = decode_features(all_combinations())
        return np.asarray(pipeline.decision_function(frame), dtype=np.float64)


def _agrees(pipeline: Any, log_odds: np.ndarray) -> bool:
    """Whether the table gives ``predict_proba``'s answer on a fixed sample of combinations."""
    rng = np.random.default_rng(0)
    probe = np.sort(rng.choice(N_COMBINATIONS, size=_PROBE, replace=False))
    codes = np.column_stack(np.unravel_index(probe, SHAPE)).astype(np.int8)
    # One thread: scikit-learn's OpenMP threads spin-wait on a busy machine, and a serving
    # process shares its cores (measured: 25-50 ms this way, 60-380 ms with two threads).
    with threadpool_limits(1):
        expected = pipeline.predict_proba(decode_features(codes))[:, 1]
    return bool(np.abs(expit(log_odds[probe]) - expected).max() <= TOLERANCE)
