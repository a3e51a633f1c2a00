"""The one scikit-learn pipeline that training builds and serving runs.

Encoding and model live in one object saved as one artifact, so training and serving can
never encode differently. The encoder's categories are the schema's vocabularies, fixed in
advance: the same columns come out whatever subset of values a dataset happens to contain.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from shared.data.schema import FEATURE_COLUMNS, VOCABULARY
from shared.errors import InvalidParameterError

ClassWeight = Literal["balanced"] | None


@dataclass(frozen=True)
class ModelParams:
    """Hyperparameters settable per run."""

    C: float = 1.0
    class_weight: ClassWeight = None
    max_iter: int = 1000
    #: Tight by default: the aggregated fit must land on the same optimum as a fit on raw rows.
    tol: float = 1e-8

    def __post_init__(self) -> None:
        if not self.C > 0:
            raise InvalidParameterError("C must be greater than 0", details={"field": "C"})
        if self.class_weight not in (None, "balanced"):
            raise InvalidParameterError(
                "class_weight must be null or 'balanced'",
                details={"field": "class_weight", "allowed": [None, "balanced"]},
            )
        if self.max_iter < 1:
            raise InvalidParameterError(
                "max_iter must be at least 1", details={"field": "max_iter"}
            )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_pipeline(params: ModelParams) -> Pipeline:
    encoder = OneHotEncoder(
        categories=[list(VOCABULARY[col]) for col in FEATURE_COLUMNS],
        handle_unknown="ignore",
        dtype=float,
    )
    classifier = LogisticRegression(
        C=params.C,
        class_weight=params.class_weight,
        max_iter=params.max_iter,
        tol=params.tol,
        solver="newton-cholesky",
    )
    return Pipeline([("onehot", encoder), ("logisticregression", classifier)])
