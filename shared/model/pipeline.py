"""The scikit-learn pipelines that training builds and serving runs, one per estimator.

Encoding and model live in one object saved as one artifact, so training and serving can
never encode differently. The encoders' categories are the schema's vocabularies, fixed in
advance: the same columns (or codes) come out whatever subset of values a dataset contains.

Both estimators are fitted on aggregated counts (one row per feature combination and label,
the count as its sample weight, see :mod:`shared.model.training`), so their parameters are
the ones that mean the same on counts as on raw rows; the README says which do not, and why
they are fixed here rather than offered.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, Literal

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

from shared.data.schema import FEATURE_COLUMNS, VOCABULARY
from shared.errors import InvalidParameterError

ClassWeight = Literal["balanced"] | None
Estimator = Literal["logistic_regression", "hist_gradient_boosting"]
ESTIMATORS: tuple[Estimator, ...] = ("logistic_regression", "hist_gradient_boosting")
DEFAULT_ESTIMATOR: Estimator = "logistic_regression"

#: Bounds of the gradient-boosting parameters. The tree counts bound the time a serving
#: process takes to turn a version into its table (:mod:`shared.model.trees`: a tree of at
#: most 64 leaves is walked as 64-bit masks); the README gives the measured times.
MAX_BOOSTING_ITER = 500
MAX_LEAF_NODES = 64
MAX_DEPTH = 32
MAX_L2_REGULARIZATION = 1e6


def _refuse(field: str, message: str, **details: Any) -> None:
    raise InvalidParameterError(f"{field} {message}", details={"field": field, **details})


def _check_class_weight(value: Any) -> None:
    if value not in (None, "balanced"):
        _refuse("class_weight", "must be null or 'balanced'", allowed=[None, "balanced"])


@dataclass(frozen=True)
class ModelParams:
    """Logistic regression (the name predates the choice of estimator)."""

    estimator: ClassVar[Estimator] = "logistic_regression"

    C: float = 1.0
    class_weight: ClassWeight = None
    max_iter: int = 1000
    #: Tight by default: the aggregated fit must land on the same optimum as a fit on raw rows.
    tol: float = 1e-8

    def __post_init__(self) -> None:
        if not self.C > 0 or not math.isfinite(self.C):
            _refuse("C", "must be greater than 0 (and finite)")
        _check_class_weight(self.class_weight)
        if self.max_iter < 1:
            _refuse("max_iter", "must be at least 1")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


LogisticRegressionParams = ModelParams


@dataclass(frozen=True)
class BoostingParams:
    """``HistGradientBoostingClassifier`` with native categorical splits on all seven features.

    Fixed, not offered: ``min_samples_leaf=1`` (scikit-learn counts rows for it, and on counts a
    row is a feature combination, not a case), ``early_stopping=False`` (its validation split
    would draw combinations, not cases; the held-out side of the split is the evaluation), and
    ``class_weight`` is applied by the project from the case counts (scikit-learn's "balanced"
    would count combinations)."""

    estimator: ClassVar[Estimator] = "hist_gradient_boosting"

    learning_rate: float = 0.1
    max_iter: int = 100
    max_leaf_nodes: int = 31
    max_depth: int | None = None
    l2_regularization: float = 0.0
    class_weight: ClassWeight = None

    def __post_init__(self) -> None:
        if not 0 < self.learning_rate <= 1:
            _refuse("learning_rate", "must be greater than 0 and at most 1")
        if not 1 <= self.max_iter <= MAX_BOOSTING_ITER:
            _refuse("max_iter", f"must be between 1 and {MAX_BOOSTING_ITER}")
        if not 2 <= self.max_leaf_nodes <= MAX_LEAF_NODES:
            _refuse("max_leaf_nodes", f"must be between 2 and {MAX_LEAF_NODES}")
        if self.max_depth is not None and not 1 <= self.max_depth <= MAX_DEPTH:
            _refuse("max_depth", f"must be null or between 1 and {MAX_DEPTH}")
        if not 0 <= self.l2_regularization <= MAX_L2_REGULARIZATION:
            _refuse("l2_regularization", f"must be between 0 and {MAX_L2_REGULARIZATION:g}")
        _check_class_weight(self.class_weight)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


EstimatorParams = ModelParams | BoostingParams
_PARAMS: dict[str, type[ModelParams] | type[BoostingParams]] = {
    cls.estimator: cls for cls in (ModelParams, BoostingParams)
}
#: Names a client may send per estimator (``tol`` is the project's, not a client's).
SETTABLE: dict[str, tuple[str, ...]] = {
    "logistic_regression": ("C", "class_weight", "max_iter"),
    "hist_gradient_boosting": tuple(f.name for f in fields(BoostingParams)),
}
_FIXED_ON_COUNTS = {
    "min_samples_leaf": "it counts rows, and training fits one row per feature combination",
    "early_stopping": "its validation split would draw combinations, not cases",
}


def estimator_params(estimator: str, values: Mapping[str, Any] | None = None) -> EstimatorParams:
    """The parameters of ``estimator`` from a job's or a command line's ``values``: an unknown
    estimator or parameter, or a value out of range, is an :class:`InvalidParameterError`
    naming the field."""
    cls = _PARAMS.get(estimator)
    if cls is None:
        raise InvalidParameterError(
            f"estimator {estimator!r} is not one of {', '.join(ESTIMATORS)}",
            details={"field": "estimator", "allowed": list(ESTIMATORS)},
        )
    values = dict(values or {})
    for name in values:
        if name in SETTABLE[estimator]:
            continue
        why = _FIXED_ON_COUNTS.get(name) if estimator == "hist_gradient_boosting" else None
        field = f"params.{name}"
        if why is not None:
            _refuse(field, f"is fixed by the project ({why})")
        _refuse(field, f"is not a parameter of {estimator}", allowed=list(SETTABLE[estimator]))
    try:
        return cls(**values)
    except TypeError as exc:  # a value of the wrong type reached a comparison
        raise InvalidParameterError(
            f"params are invalid: {exc}", details={"field": "params"}
        ) from None


def _categories() -> list[list[str]]:
    return [list(VOCABULARY[col]) for col in FEATURE_COLUMNS]


def build_pipeline(params: EstimatorParams) -> Pipeline:
    if isinstance(params, BoostingParams):
        return _boosting_pipeline(params)
    encoder = OneHotEncoder(categories=_categories(), handle_unknown="ignore", dtype=float)
    classifier = LogisticRegression(
        C=params.C,
        class_weight=params.class_weight,
        max_iter=params.max_iter,
        tol=params.tol,
        solver="newton-cholesky",
    )
    return Pipeline([("onehot", encoder), ("logisticregression", classifier)])


def _boosting_pipeline(params: BoostingParams) -> Pipeline:
    # Codes in the vocabulary's order: category c of column j is the number c, which is what
    # the serving table (shared.model.trees) reads the trees' category sets by.
    encoder = OrdinalEncoder(
        categories=_categories(),
        handle_unknown="use_encoded_value",
        unknown_value=np.nan,
        dtype=np.float64,
    )
    classifier = HistGradientBoostingClassifier(
        learning_rate=params.learning_rate,
        max_iter=params.max_iter,
        max_leaf_nodes=params.max_leaf_nodes,
        max_depth=params.max_depth,
        l2_regularization=params.l2_regularization,
        min_samples_leaf=1,
        early_stopping=False,
        categorical_features=list(range(len(FEATURE_COLUMNS))),
        random_state=0,
    )
    return Pipeline([("ordinal", encoder), ("histgradientboostingclassifier", classifier)])


def fit_params(params: EstimatorParams, labels: np.ndarray, weights: np.ndarray) -> dict[str, Any]:
    """The ``fit`` keyword arguments that pass the counts as sample weights to the estimator.

    Gradient boosting's "balanced" is applied here, from the weights (the case counts): the
    same class weights a fit on raw rows would compute, where scikit-learn's own would count
    feature combinations."""
    if isinstance(params, ModelParams):
        return {"logisticregression__sample_weight": weights}
    if params.class_weight == "balanced":
        totals = np.bincount(labels, weights=weights, minlength=2)
        weights = weights * (totals.sum() / (2 * totals))[labels]
    return {"histgradientboostingclassifier__sample_weight": weights}
