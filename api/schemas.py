"""Request and response bodies: every one the API reads or writes, so /docs shows them all."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias

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

from shared.data.schema import FEATURE_COLUMNS, MISSING, VOCABULARY
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
from shared.registry.versions import VERSION_PATTERN

_MODEL_DEFAULTS = ModelParams()
_BOOSTING_DEFAULTS = BoostingParams()
_SPLIT_DEFAULTS = SplitParams()
MAX_RECORDS = 10_000
#: The largest integer every JSON client reads exactly (a double's 53 bits): bounds beyond it
#: would mean different numbers to different clients.
MAX_JSON_INT = 2**53 - 1

# What the server's stores accept, so the schema says exactly which strings are valid: a request
# the schema allows is never refused for its form (tests/api/test_main.py ties each pattern to
# the store's own check). The patterns are the stores' own: JOB_ID_PATTERN, VERSION_PATTERN and
# DATASET_NAME_PATTERN.
DATASET_NAME_MAX_LENGTH = 132


def _integral(value: Any) -> Any:
    """JSON has numbers, not ints and floats: ``5.0`` is the integer 5 (as JSON Schema says)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


#: An integer as JSON Schema means it: ``5`` or ``5.0``, never ``"5"``, ``true`` or ``5.5``.
JsonInt = Annotated[int, BeforeValidator(_integral)]


class _Strict(BaseModel):
    """Request bodies refuse unknown fields: a typo such as ``"c"`` for ``"C"`` must not be
    silently ignored and trained with the default. And they take exactly the JSON types the
    schema names: no ``"5"`` for an integer, no ``0`` or ``"yes"`` for a boolean (an integer
    is still a number)."""

    model_config = ConfigDict(extra="forbid", strict=True)


# --- errors -----------------------------------------------------------------------------------


class ErrorInfo(BaseModel):
    code: str = Field(description="Stable machine-readable error code.")
    message: str = Field(description="What went wrong, for a person.")
    details: Any = Field(None, description="Structured context (fields, allowed values...).")
    request_id: str = Field(description="Also in the X-Request-ID response header.")


class ErrorResponse(BaseModel):
    """The one shape of every error the API answers."""

    error: ErrorInfo


# --- training and jobs ------------------------------------------------------------------------


class TrainParams(_Strict):
    """Parameters of `logistic_regression`."""

    C: float = Field(
        _MODEL_DEFAULTS.C, gt=0, allow_inf_nan=False, description="Inverse regularisation."
    )
    class_weight: Literal["balanced"] | None = Field(_MODEL_DEFAULTS.class_weight)
    max_iter: JsonInt = Field(_MODEL_DEFAULTS.max_iter, ge=1, le=100_000)


class BoostingTrainParams(_Strict):
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
        Annotated[int, Field(ge=1, le=estimators.MAX_DEPTH), BeforeValidator(_integral)] | None
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


class TrainRequest(_Strict):
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


# --- predictions ------------------------------------------------------------------------------

if TYPE_CHECKING:
    CurrentStatus: TypeAlias = str
    Sex: TypeAlias = str
    AgeGroup: TypeAlias = str
    RaceEthnicity: TypeAlias = str
    YesNo: TypeAlias = str
else:
    # Built from the schema so the API accepts exactly the strings training encodes.
    CurrentStatus = Literal[VOCABULARY["current_status"]]
    Sex = Literal[VOCABULARY["sex"]]
    AgeGroup = Literal[VOCABULARY["age_group"]]
    RaceEthnicity = Literal[VOCABULARY["race_ethnicity_combined"]]
    YesNo = Literal[VOCABULARY["hosp_yn"]]


class CaseRecord(_Strict):
    """One case, with CDC's strings. An omitted field is ``Missing``, as a blank cell is in a
    file, except ``age_group``: the model's strongest input is required."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "current_status": "Laboratory-confirmed case",
                    "sex": "Female",
                    "age_group": "60 - 69 Years",
                    "race_ethnicity_combined": "White, Non-Hispanic",
                    "hosp_yn": "Yes",
                    "icu_yn": "No",
                    "medcond_yn": "Yes",
                }
            ]
        },
    )

    current_status: CurrentStatus = MISSING
    sex: Sex = MISSING
    age_group: AgeGroup
    race_ethnicity_combined: RaceEthnicity = MISSING
    hosp_yn: YesNo = MISSING
    icu_yn: YesNo = MISSING
    medcond_yn: YesNo = MISSING


class PredictRequest(_Strict):
    records: list[CaseRecord] = Field(min_length=1, max_length=MAX_RECORDS)
    explain: bool = Field(
        False, description="Also give each prediction its `explanation` (see `Explanation`)."
    )


class Contributions(BaseModel):
    """Each feature's Shapley value, in log-odds."""

    current_status: float
    sex: float
    age_group: float
    race_ethnicity_combined: float
    hosp_yn: float
    icu_yn: float
    medcond_yn: float


assert tuple(Contributions.model_fields) == FEATURE_COLUMNS


class Explanation(BaseModel):
    """Exact interventional Shapley values of the seven features, in log-odds, against the
    training data's distribution (the training side's cases, kept with the version):
    `baseline_log_odds` plus the contributions is the prediction's log-odds,
    log(p / (1 - p))."""

    baseline_log_odds: float = Field(
        description="The mean log-odds over the training cases: the prediction before any of "
        "the record's features is known."
    )
    contributions: Contributions


class Prediction(BaseModel):
    label: Literal["Yes", "No"] = Field(description='"Yes" when probability >= 0.5.')
    probability: float = Field(ge=0, le=1, description="P(death_yn = Yes).")
    explanation: Explanation | None = Field(
        None, description='Only when the request says `"explain": true`.'
    )


class PredictResponse(BaseModel):
    model_version: str
    predictions: list[Prediction]


#: Values a client may send, by field name: validation errors on these fields list them.
FIELD_CHOICES: dict[str, list[Any]] = {
    **{column: list(VOCABULARY[column]) for column in FEATURE_COLUMNS},
    "status": [status.value for status in JobStatus],
    "class_weight": [None, "balanced"],
    "estimator": list(ESTIMATORS),
}


# --- datasets ---------------------------------------------------------------------------------


class DatasetOut(BaseModel):
    name: str = Field(pattern=DATASET_NAME_PATTERN)
    size_bytes: int
    modified_at: datetime


class DatasetList(BaseModel):
    datasets: list[DatasetOut]
    default: str = Field(description="Used by POST /train when the body names no dataset.")


#: The smallest file POST /datasets accepts: the eight columns, and both outcomes.
EXAMPLE_CSV = (
    "current_status,sex,age_group,race_ethnicity_combined,hosp_yn,icu_yn,medcond_yn,death_yn\n"
    'Laboratory-confirmed case,Male,80+ Years,"White, Non-Hispanic",Yes,Yes,Yes,Yes\n'
    "Probable Case,Female,20 - 29 Years,Hispanic/Latino,No,No,No,No\n"
)


class DatasetUploadForm(BaseModel):
    """The multipart form of POST /datasets (documentation only: the body is streamed)."""

    file: bytes = Field(
        description=(
            "A CDC case surveillance CSV file, sent as a file part (with a filename). Whether "
            "it is usable depends on its content (columns, values, both outcomes), which no "
            "schema can say: 422 `invalid_dataset` if not."
        ),
        examples=[EXAMPLE_CSV],
    )


class DatasetSummaryOut(BaseModel):
    name: str = Field(
        pattern=DATASET_NAME_PATTERN,
        description="The name chosen by the server; use it in POST /train.",
    )
    rows: int
    labelled: int
    positives: int
    negatives: int
    invalid_values: dict[str, int] = Field(
        description="Per feature column, cells outside CDC's vocabulary (read as Missing)."
    )
    sha256: str
    size_bytes: int


# --- models -----------------------------------------------------------------------------------


class DatasetRef(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str | None = None
    size_bytes: int | None = None
    sha256: str | None = None


class KeyMetrics(BaseModel):
    roc_auc: float | None = None
    accuracy: float | None = None
    balanced_accuracy: float | None = None
    precision: float | None = None
    recall: float | None = None
    f1: float | None = None
    log_loss: float | None = None
    brier: float | None = None


class Gate(BaseModel):
    passed: bool
    reasons: list[str] = Field(default_factory=list)


Version = Annotated[str, Field(pattern=VERSION_PATTERN)]


class ModelSummary(BaseModel):
    version: Version
    created_at: datetime | None = None
    estimator: str | None = Field(
        None,
        description="null: saved before the estimator could be chosen (a logistic regression).",
    )
    dataset: DatasetRef | None = None
    rows: dict[str, int] | None = None
    metrics: KeyMetrics | None = None
    gate: Gate | None = None
    promoted: bool = Field(description="Whether this version is the production one.")


class ModelList(BaseModel):
    production: Version | None
    versions: list[ModelSummary] = Field(description="Newest first.")


class ModelMetadata(BaseModel):
    """A version's metadata.json as saved (only the main keys are listed here)."""

    model_config = ConfigDict(extra="allow")

    version: str
    created_at: str | None = None
    dataset: dict[str, Any] | None = None
    rows: dict[str, Any] | None = None
    params: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    group_metrics: dict[str, Any] | None = None
    gate: dict[str, Any] | None = None


class PromoteRequest(_Strict):
    force: bool = Field(False, description="Promote even if the version failed the gate.")


class ProductionOut(BaseModel):
    production: Version | None
    history: list[Version] = Field(description="Previous production versions, oldest first.")


# --- health -----------------------------------------------------------------------------------


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class RedisCheck(BaseModel):
    ok: bool
    detail: str


class WorkersCheck(BaseModel):
    ok: bool
    workers: list[str]
    detail: str | None = None


class ReadyChecks(BaseModel):
    redis: RedisCheck
    training_workers: WorkersCheck
    prediction_workers: WorkersCheck


class Readiness(BaseModel):
    ready: bool
    checks: ReadyChecks
