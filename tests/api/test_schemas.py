"""The request models accept exactly the schema's strings."""

from __future__ import annotations

from typing import get_args

import pytest
from pydantic import ValidationError

from api.schemas import CaseRecord, TrainParams, TrainRequest
from shared.data.schema import FEATURE_COLUMNS, MISSING, VOCABULARY
from shared.model.pipeline import ModelParams
from shared.model.training import SplitParams


def test_case_record_fields_follow_the_schema() -> None:
    assert tuple(CaseRecord.model_fields) == FEATURE_COLUMNS
    for column in FEATURE_COLUMNS:
        annotation = CaseRecord.model_fields[column].annotation
        assert get_args(annotation) == VOCABULARY[column], column


def test_every_value_is_accepted_and_omitted_ones_are_missing() -> None:
    for column in FEATURE_COLUMNS:
        for value in VOCABULARY[column]:
            record = CaseRecord.model_validate({"age_group": "80+ Years", column: value})
            assert getattr(record, column) == value
    record = CaseRecord.model_validate({"age_group": "80+ Years"})
    assert record.sex == MISSING and record.medcond_yn == MISSING


@pytest.mark.parametrize("value", ["female", " Female", "", None, 1])
def test_near_misses_are_refused(value: object) -> None:
    with pytest.raises(ValidationError):
        CaseRecord.model_validate({"age_group": "80+ Years", "sex": value})


def test_train_defaults_are_the_training_cores() -> None:
    params, body = TrainParams(), TrainRequest()
    defaults = ModelParams()
    assert (params.C, params.class_weight, params.max_iter) == (
        defaults.C,
        defaults.class_weight,
        defaults.max_iter,
    )
    split = SplitParams()
    assert (body.test_size, body.random_state) == (split.test_size, split.random_state)
