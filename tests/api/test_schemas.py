"""The request models: exactly the schema's strings, and the domain's training defaults."""

from __future__ import annotations

from dataclasses import asdict
from typing import get_args

import pytest
from pydantic import ValidationError

from api.schemas.predictions import CaseRecord
from shared.data.schema import FEATURE_COLUMNS, MISSING, VOCABULARY
from shared.jobs.records import JobStatus
from shared.jobs.runner import TrainingContext, run_training_job
from shared.model.pipeline import ModelParams
from shared.model.training import SplitParams
from tests.api.conftest import Api, MakeApi


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


def test_the_documented_training_defaults_are_the_domains(api: Api) -> None:
    """What /docs tells a client the defaults are is what training uses when none is sent."""
    schemas = api.client.get("/openapi.json").json()["components"]["schemas"]
    params = {
        name: field.get("default") for name, field in schemas["TrainParams"]["properties"].items()
    }
    body = {
        name: field.get("default") for name, field in schemas["TrainRequest"]["properties"].items()
    }
    model, split = ModelParams(), SplitParams()
    assert params == {"C": model.C, "class_weight": model.class_weight, "max_iter": model.max_iter}
    assert (body["test_size"], body["random_state"]) == (split.test_size, split.random_state)


def test_a_training_submitted_with_no_body_runs_with_the_domains_defaults(
    make_api: MakeApi,
) -> None:
    """The API records the job's full parameters; the real runner trains with exactly them,
    and what the saved version says it ran with is the domain's defaults."""
    api = make_api(models="empty")
    job_id = api.client.post("/train").json()["job_id"]
    params = api.jobs.get(job_id).params
    model, split = ModelParams(), SplitParams()
    assert params["params"] == {k: v for k, v in asdict(model).items() if k != "tol"}
    assert (params["test_size"], params["random_state"]) == (split.test_size, split.random_state)
    context = TrainingContext(
        jobs=api.jobs,
        registry=api.registry,
        datasets=api.services.datasets,
        chunk_rows=api.settings.chunk_rows,
        worker_name="test-worker",
    )
    run_training_job(context, job_id)
    job = api.jobs.get(job_id)
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert job.result is not None
    saved = api.registry.get(job.result["version"]).metadata
    assert saved["params"] == model.as_dict()
    assert {k: saved["split"][k] for k in ("test_size", "random_state")} == asdict(split)
