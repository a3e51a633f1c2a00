"""Prediction requests and answers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.base import StrictModel
from shared.data.schema import FEATURE_COLUMNS, MISSING, VOCABULARY
from shared.jobs.records import JobStatus
from shared.model.pipeline import ESTIMATORS

MAX_RECORDS = 10_000

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


class CaseRecord(StrictModel):
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


class PredictRequest(StrictModel):
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
