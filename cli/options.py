"""Options more than one command takes, defined once so that they read the same everywhere."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer


class ClassWeightOption(StrEnum):
    none = "none"
    balanced = "balanced"


UrlOption = Annotated[str | None, typer.Option("--url", help="API base URL (default: API_URL).")]
ApiKeyOption = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        help="The key of an API that sets API_KEY (default: the API_KEY setting, which keeps "
        "it out of the shell history and the process list).",
        show_default=False,
    ),
]
TimeoutOption = Annotated[
    float | None,
    typer.Option(
        "--timeout",
        min=0,
        metavar="SECONDS",
        help="Stop watching a job after this long, with exit code 3; the job goes on "
        "(default: TRAINING_TIME_LIMIT_SECONDS + 60 + JOB_LEASE_SECONDS, by when any running "
        "training has ended).",
        show_default=False,
    ),
]


class EstimatorOption(StrEnum):
    logistic_regression = "logistic_regression"
    hist_gradient_boosting = "hist_gradient_boosting"


# The model options of `rvt train` and `rvt api train`: each left out means the estimator's
# own default, so only what was given is sent, and a parameter the estimator does not take is
# refused naming it (by the domain, or by the API's 422).
EstimatorOpt = Annotated[
    EstimatorOption,
    typer.Option(help="The model: a logistic regression, or gradient-boosted trees."),
]
COpt = Annotated[
    float | None,
    typer.Option("--C", help="logistic_regression: inverse regularisation strength [1.0]."),
]
ClassWeightOpt = Annotated[
    ClassWeightOption | None, typer.Option(help="'balanced' reweights the rare class [none].")
]
MaxIterOpt = Annotated[
    int | None,
    typer.Option(help="Solver iterations at most [1000]; hist_gradient_boosting: trees [100]."),
]
LearningRateOpt = Annotated[
    float | None, typer.Option(help="hist_gradient_boosting: shrinkage per tree [0.1].")
]
MaxLeafNodesOpt = Annotated[
    int | None, typer.Option(help="hist_gradient_boosting: leaves per tree, 2 to 64 [31].")
]
MaxDepthOpt = Annotated[
    int | None, typer.Option(help="hist_gradient_boosting: depth per tree [no limit].")
]
L2RegularizationOpt = Annotated[
    float | None, typer.Option(help="hist_gradient_boosting: L2 penalty on leaf values [0].")
]


def model_params(
    c: float | None,
    class_weight: ClassWeightOption | None,
    max_iter: int | None,
    learning_rate: float | None,
    max_leaf_nodes: int | None,
    max_depth: int | None,
    l2_regularization: float | None,
) -> dict[str, Any]:
    """The model options given, by the parameter names the domain and the API use."""
    given: dict[str, Any] = {
        "C": c,
        "class_weight": None if class_weight is None else class_weight.value,
        "max_iter": max_iter,
        "learning_rate": learning_rate,
        "max_leaf_nodes": max_leaf_nodes,
        "max_depth": max_depth,
        "l2_regularization": l2_regularization,
    }
    params: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    if params.get("class_weight") == ClassWeightOption.none.value:
        params["class_weight"] = None
    return params
