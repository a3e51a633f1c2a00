"""POST /predict: validation against CDC's strings, encoding, and the worker's failures."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from shared.data.schema import FEATURE_COLUMNS, MISSING, VOCABULARY
from shared.errors import NoProductionModelError, OverloadedError
from shared.registry.versions import ModelRegistry
from tests.api.conftest import Api, MakeApi, assert_error, unavailable
from tests.conftest import SEVERE_CASE

RECORD = SEVERE_CASE
JSON = {"content-type": "application/json"}


def _varied_records(n: int) -> list[dict[str, str]]:
    """Every value of every column occurs: records cycle through each vocabulary."""
    cycles = [itertools.cycle(VOCABULARY[col]) for col in FEATURE_COLUMNS]
    return [
        {col: next(cycle) for col, cycle in zip(FEATURE_COLUMNS, cycles, strict=True)}
        for _ in range(n)
    ]


def _expected(registry: ModelRegistry, records: list[dict[str, str]]) -> np.ndarray:
    model = registry.load(registry.production_version() or "")
    frame = pd.DataFrame(records).reindex(columns=FEATURE_COLUMNS).fillna(MISSING)
    return np.asarray(model.predict_proba(frame)[:, 1])


def test_probabilities_are_the_models_own(api: Api) -> None:
    records = _varied_records(60)
    response = api.client.post("/predict", json={"records": records})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == "v1"
    got = np.array([p["probability"] for p in body["predictions"]])
    np.testing.assert_allclose(got, _expected(api.registry, records), rtol=0, atol=1e-9)
    assert [p["label"] for p in body["predictions"]] == ["Yes" if p >= 0.5 else "No" for p in got]


def test_the_encoding_is_the_schemas(api: Api) -> None:
    api.client.post("/predict", json={"records": [RECORD]})
    (codes,) = api.predictor.calls
    assert codes.dtype == np.int8 and codes.shape == (1, 7)
    assert [VOCABULARY[col][code] for col, code in zip(FEATURE_COLUMNS, codes[0], strict=True)] == [
        RECORD[col] for col in FEATURE_COLUMNS
    ]


def test_an_old_hospitalised_case_is_yes_and_a_child_is_no(api: Api) -> None:
    body = {"records": [RECORD, {"age_group": "0 - 9 Years"}]}
    old, young = api.client.post("/predict", json=body).json()["predictions"]
    assert old["label"] == "Yes" and young["label"] == "No"


def test_an_omitted_field_means_missing(api: Api) -> None:
    explicit = {"age_group": "50 - 59 Years"} | dict.fromkeys(
        ("current_status", "sex", "race_ethnicity_combined", "hosp_yn", "icu_yn", "medcond_yn"),
        MISSING,
    )
    body = {"records": [{"age_group": "50 - 59 Years"}, explicit]}
    omitted, spelled = api.client.post("/predict", json=body).json()["predictions"]
    assert omitted == spelled


def test_age_group_is_required(api: Api) -> None:
    record = {k: v for k, v in RECORD.items() if k != "age_group"}
    error = assert_error(
        api.client.post("/predict", json={"records": [record]}), 422, "validation_error"
    )
    assert [item["field"] for item in error["details"]] == ["records.0.age_group"]
    assert error["details"][0]["type"] == "missing"
    assert api.predictor.calls == []


def test_a_typo_is_422_naming_the_field_and_the_allowed_values(api: Api) -> None:
    records = [RECORD, RECORD | {"sex": "Femal"}]
    error = assert_error(
        api.client.post("/predict", json={"records": records}), 422, "validation_error"
    )
    (item,) = error["details"]
    assert item["field"] == "records.1.sex"
    assert item["input"] == "Femal"
    assert item["allowed"] == ["Female", "Male", "Other", "Unknown", "Missing"]
    assert "records.1.sex" in error["message"]


def test_an_unknown_field_is_422(api: Api) -> None:
    error = assert_error(
        api.client.post("/predict", json={"records": [RECORD | {"death_yn": "Yes"}]}),
        422,
        "validation_error",
    )
    assert error["details"][0]["field"] == "records.0.death_yn"
    assert error["details"][0]["type"] == "extra_forbidden"


@pytest.mark.parametrize("count", [0, 10_001])
def test_zero_or_more_than_ten_thousand_records_is_422(api: Api, count: int) -> None:
    body = {"records": [{"age_group": "80+ Years"}] * count}
    error = assert_error(api.client.post("/predict", json=body), 422, "validation_error")
    assert error["details"][0]["field"] == "records"
    assert api.predictor.calls == []


def test_ten_thousand_records_are_fine(api: Api) -> None:
    records = _varied_records(10_000)
    body = api.client.post("/predict", json={"records": records}).json()
    got = np.array([p["probability"] for p in body["predictions"]])
    np.testing.assert_allclose(got, _expected(api.registry, records), rtol=0, atol=1e-9)


def test_many_bad_records_answer_a_bounded_error_list(api: Api) -> None:
    body = {"records": [{"age_group": "old"}] * 500}
    error = assert_error(api.client.post("/predict", json=body), 422, "validation_error")
    assert len(error["details"]) == 50
    assert "499 more errors" in error["message"]


def test_no_production_model_is_503_saying_to_train_first(make_api: MakeApi) -> None:
    api = make_api(models="empty")
    response = api.client.post("/predict", json={"records": [RECORD]})
    error = assert_error(response, 503, "no_production_model")
    assert "train" in error["message"]


def test_no_production_model_from_the_worker_is_503(api: Api) -> None:
    api.predictor.fail_with = NoProductionModelError("no production model yet: train one first")
    assert_error(
        api.client.post("/predict", json={"records": [RECORD]}), 503, "no_production_model"
    )


def test_an_overloaded_api_refuses_with_503_and_retry_after_before_reading_the_body(
    api: Api,
) -> None:
    api.predictor.full = OverloadedError("overloaded: 64 predictions are already waiting")
    # the body is not even valid: a refusal is decided before it is read
    response = api.client.post("/predict", content=b"{not json", headers=JSON)
    error = assert_error(response, 503, "overloaded")
    assert response.headers["retry-after"] == "1"
    assert "waiting" in error["message"]
    assert api.predictor.calls == []
    api.predictor.full = None
    assert api.client.post("/predict", json={"records": [RECORD]}).status_code == 200


def test_the_openapi_documents_retry_after_on_predict_s_503(api: Api) -> None:
    operation = api.client.get("/openapi.json").json()["paths"]["/predict"]["post"]
    assert "Retry-After" in operation["responses"]["503"]["headers"]


def test_no_worker_answering_is_503_prediction_unavailable(api: Api) -> None:
    api.predictor.fail_with = unavailable()
    error = assert_error(
        api.client.post("/predict", json={"records": [RECORD]}), 503, "prediction_unavailable"
    )
    assert "worker" in error["message"]
