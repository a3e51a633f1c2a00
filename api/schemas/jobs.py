"""Training requests and the jobs they start."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from api.schemas.base import DATASET_NAME_MAX_LENGTH, MAX_JSON_INT, JsonInt, StrictModel, integral
from shared.data.store import DATASET_NAME_PATTERN
from shared.jobs.records import JOB_ID_PATTERN, JobStatus
from shared.model import pipeline as estimators
from shared.model.pipeline import (
    DEFAULT_ESTIMATOR,
    ESTIMATORS,
    BoostingParams,
    Estimator,
    ModelParams,
)
from shared.model.training import SplitParams

_MODEL_DEFAULTS = ModelParams()
_BOOSTING_DEFAULTS = BoostingParams()
_SPLIT_DEFAULTS = SplitParams()


class TrainParams(StrictModel):
    """Parameters of `logistic_regression`."""

    C: float = Field(
        _MODEL_DEFAULTS.C, gt=0, allow_inf_nan=False, description="Inverse regularisation."
    )
    class_weight: Literal["balanced"] | None = Field(_MODEL_DEFAULTS.class_weight)
    max_iter: JsonInt = Field(_MODEL_DEFAULTS.max_iter, ge=1, le=100_000)


class BoostingTrainParams(StrictModel):
    """Parameters of `hist_gradient_boosting` (scikit-learn's HistGradientBoostingClassifier,
    native categorical splits). Fixed by the project, because they would mean something else
    on the aggregated counts training fits: `min_samples_leaf` (1) and `early_stopping` (off);
    `class_weight` "balanced" is computed from the case counts."""

    learning_rate: float = Field(_BOOSTING_DEFAULTS.learning_rate, gt=0, le=1)
    max_iter: JsonInt = Field(
        _BOOSTING_DEFAULTS.max_iter,
        ge=1,
        le=estimators.MAX_BOOSTING_ITER,
        description="Boosting iterations (trees).",
    )
    max_leaf_nodes: JsonInt = Field(
        _BOOSTING_DEFAULTS.max_leaf_nodes, ge=2, le=estimators.MAX_LEAF_NODES
    )
    # the bounds inside the Annotated: on an optional field they must constrain the integer
    max_depth: (
        Annotated[int, Field(ge=1, le=estimators.MAX_DEPTH), BeforeValidator(integral)] | None
    ) = Field(_BOOSTING_DEFAULTS.max_depth, description="null: no limit.")
    l2_regularization: float = Field(
        _BOOSTING_DEFAULTS.l2_regularization, ge=0, le=estimators.MAX_L2_REGULARIZATION
    )
    class_weight: Literal["balanced"] | None = Field(_BOOSTING_DEFAULTS.class_weight)


_PARAMS_OF: dict[str, type[TrainParams] | type[BoostingTrainParams]] = {
    "logistic_regression": TrainParams,
    "hist_gradient_boosting": BoostingTrainParams,
}
assert set(_PARAMS_OF) == set(ESTIMATORS)
assert tuple(BoostingTrainParams.model_fields) == estimators.SETTABLE["hist_gradient_boosting"]
assert tuple(TrainParams.model_fields) == estimators.SETTABLE["logistic_regression"]


def _params_per_estimator(schema: dict[str, Any]) -> None:
    """What the validator below checks, said in the schema: ``params`` takes the parameters
    of the estimator the body names (the default one when it names none)."""
    logistic, boosting = schema["properties"]["params"]["anyOf"]  # the field's union, in order
    schema["if"] = {
        "properties": {"estimator": {"const": "hist_gradient_boosting"}},
        "required": ["estimator"],
    }
    schema["then"] = {"properties": {"params": boosting}}
    schema["else"] = {"properties": {"params": logistic}}


class TrainRequest(StrictModel):
    model_config = ConfigDict(json_schema_extra=_params_per_estimator)

    estimator: Estimator = Field(
        DEFAULT_ESTIMATOR,
        description="The model trained: `logistic_regression` (one-hot encoded) or "
        "`hist_gradient_boosting` (gradient-boosted trees with categorical splits).",
    )
    #: ``params`` is validated against the named estimator's parameters (see the validator);
    #: omitted, it is that estimator's defaults.
    params: TrainParams | BoostingTrainParams = Field(
        default_factory=TrainParams,
        description="The estimator's parameters: `TrainParams` for `logistic_regression`, "
        "`BoostingTrainParams` for `hist_gradient_boosting`.",
    )
    dataset: str | None = Field(
        None,
        min_length=5,
        max_length=DATASET_NAME_MAX_LENGTH,
        pattern=DATASET_NAME_PATTERN,
        description=(
            "A name from GET /datasets (422 `unknown_dataset` if no dataset has it); "
            "default: the server's default dataset."
        ),
    )
    test_size: float = Field(_SPLIT_DEFAULTS.test_size, gt=0, lt=1)
    random_state: JsonInt = Field(_SPLIT_DEFAULTS.random_state, ge=0, le=MAX_JSON_INT)
    min_roc_auc: float | None = Field(
        None, ge=0, le=1, description="Quality gate; default: the server's MIN_ROC_AUC."
    )
    promote: bool = Field(True, description="Promote the new version if it passes the gate.")

    @field_validator("params", mode="wrap")
    @classmethod
    def _params_of_the_estimator(
        cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> Any:
        """Validate ``params`` as the named estimator's, so that an error names the field
        (``params.learning_rate``), not a union member."""
        estimator = info.data.get("estimator")
        if estimator is None:  # the estimator itself was invalid: that is the error to report
            return TrainParams()
        kind = _PARAMS_OF[estimator]
        return value if isinstance(value, kind) else kind.model_validate(value, strict=True)

    @model_validator(mode="after")
    def _default_params_follow_the_estimator(self) -> TrainRequest:
        if "params" not in self.model_fields_set:
            self.params = _PARAMS_OF[self.estimator]()
        return self


class TrainAccepted(BaseModel):
    job_id: str = Field(pattern=JOB_ID_PATTERN)
    status: JobStatus
    status_url: str = Field(description="Poll this (GET) for progress and the result.")


class JobError(BaseModel):
    model_config = ConfigDict(extra="allow")

    code: str
    message: str


class JobOut(BaseModel):
    job_id: str = Field(pattern=JOB_ID_PATTERN)
    kind: str
    status: JobStatus
    progress: float = Field(ge=0, le=1)
    stage: str | None
    rows_read: int
    submitted_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    result: dict[str, Any] | None
    error: JobError | None


class JobList(BaseModel):
    jobs: list[JobOut]
