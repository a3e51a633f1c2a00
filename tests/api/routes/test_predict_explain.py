"""POST /predict with "explain": true: each prediction's contributions, in the documented
shape, adding up to its log-odds; and a clear refusal when the version cannot explain."""

from __future__ import annotations

import copy

import numpy as np

from shared.data.schema import FEATURE_COLUMNS
from shared.model.explain import DISTRIBUTION_ATTRIBUTE
from tests.api.conftest import Api, MakeApi, assert_error
from tests.conftest import SEVERE_CASE

CHILD = {"age_group": "0 - 9 Years", "hosp_yn": "No"}


def test_explained_predictions_add_up_to_their_log_odds(api: Api) -> None:
    response = api.client.post("/predict", json={"records": [SEVERE_CASE, CHILD], "explain": True})
    assert response.status_code == 200, response.text
    assert api.predictor.explained == [True]
    predictions = response.json()["predictions"]
    baselines = set()
    for prediction in predictions:
        explanation = prediction["explanation"]
        assert set(explanation) == {"baseline_log_odds", "contributions"}
        assert list(explanation["contributions"]) == list(FEATURE_COLUMNS)
        p = prediction["probability"]
        total = explanation["baseline_log_odds"] + sum(explanation["contributions"].values())
        assert abs(total - np.log(p / (1 - p))) < 1e-9
        baselines.add(explanation["baseline_log_odds"])
    assert len(baselines) == 1  # one baseline: the version's, not the record's
    severe, child = (p["explanation"]["contributions"] for p in predictions)
    assert severe["age_group"] > 0 > child["age_group"]  # 80+ raises the odds, 0-9 lowers them


def test_the_same_record_explained_or_not_gets_the_same_probability(api: Api) -> None:
    plain = api.client.post("/predict", json={"records": [SEVERE_CASE]}).json()
    explained = api.client.post("/predict", json={"records": [SEVERE_CASE], "explain": True}).json()
    assert "explanation" not in plain["predictions"][0]
    assert (
        explained["predictions"][0]["probability"] == (plain["predictions"][0]["probability"])
    )  # the table and the pipeline agree to the last bit here: both are predict_proba's
    assert api.predictor.explained == [False, True]


def test_explain_false_is_a_plain_prediction(api: Api) -> None:
    response = api.client.post("/predict", json={"records": [SEVERE_CASE], "explain": False})
    assert response.status_code == 200
    assert "explanation" not in response.json()["predictions"][0]
    assert api.predictor.explained == [False]


def test_explain_must_be_a_boolean(api: Api) -> None:
    for value in ["yes", 1, None, [True]]:
        response = api.client.post("/predict", json={"records": [SEVERE_CASE], "explain": value})
        error = assert_error(response, 422, "validation_error")
        assert [item["field"] for item in error["details"]] == ["explain"]
    assert api.predictor.calls == []


def test_a_version_saved_without_its_distribution_answers_409(make_api: MakeApi) -> None:
    api = make_api()
    pipeline = copy.copy(api.registry.load("v1"))
    delattr(pipeline, DISTRIBUTION_ATTRIBUTE)  # as a version saved before explanations
    old = api.registry.save_version(pipeline, api.registry.get("v1").metadata)
    api.registry.promote(old.version)
    response = api.client.post("/predict", json={"records": [SEVERE_CASE], "explain": True})
    error = assert_error(response, 409, "explanation_unavailable")
    assert old.version in error["message"] and "train a new version" in error["message"]
    plain = api.client.post("/predict", json={"records": [SEVERE_CASE]})
    assert plain.status_code == 200


def test_openapi_documents_the_explanation(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["properties"]["explain"]["type"] == "boolean"
    assert set(schemas["Contributions"]["properties"]) == set(FEATURE_COLUMNS)
    assert set(schemas["Explanation"]["required"]) == {"baseline_log_odds", "contributions"}
    assert "409" in spec["paths"]["/predict"]["post"]["responses"]
