"""POST /train's choice of estimator: each validates its own parameters, the job records them,
and the schema says exactly what the validation accepts."""

from __future__ import annotations

import pytest

from shared.model.pipeline import BoostingParams
from tests.api.conftest import DEFAULT_DATASET, Api, assert_error


def test_gradient_boosting_with_its_defaults_is_recorded_in_full(api: Api) -> None:
    response = api.client.post("/train", json={"estimator": "hist_gradient_boosting"})
    assert response.status_code == 202, response.text
    params = api.jobs.get(response.json()["job_id"]).params
    assert params["dataset"] == DEFAULT_DATASET
    assert params["estimator"] == "hist_gradient_boosting"
    assert params["params"] == BoostingParams().as_dict()


def test_gradient_boosting_parameters_are_taken(api: Api) -> None:
    body = {
        "estimator": "hist_gradient_boosting",
        "params": {"learning_rate": 0.2, "max_iter": 50, "max_depth": 4, "class_weight": None},
    }
    job_id = api.client.post("/train", json=body).json()["job_id"]
    params = api.jobs.get(job_id).params["params"]
    assert (params["learning_rate"], params["max_iter"], params["max_depth"]) == (0.2, 50, 4)
    assert params["max_leaf_nodes"] == BoostingParams().max_leaf_nodes


@pytest.mark.parametrize(
    ("body", "field"),
    [
        # a parameter of the other estimator, or of none
        ({"estimator": "hist_gradient_boosting", "params": {"C": 1.0}}, "params.C"),
        ({"params": {"learning_rate": 0.1}}, "params.learning_rate"),
        ({"estimator": "logistic_regression", "params": {"max_depth": 3}}, "params.max_depth"),
        # fixed on counts: refused, not ignored
        (
            {"estimator": "hist_gradient_boosting", "params": {"min_samples_leaf": 20}},
            "params.min_samples_leaf",
        ),
        (
            {"estimator": "hist_gradient_boosting", "params": {"early_stopping": True}},
            "params.early_stopping",
        ),
        # out of range
        (
            {"estimator": "hist_gradient_boosting", "params": {"learning_rate": 0}},
            "params.learning_rate",
        ),
        ({"estimator": "hist_gradient_boosting", "params": {"max_iter": 501}}, "params.max_iter"),
        (
            {"estimator": "hist_gradient_boosting", "params": {"max_leaf_nodes": 65}},
            "params.max_leaf_nodes",
        ),
        ({"estimator": "hist_gradient_boosting", "params": {"max_depth": 0}}, "params.max_depth"),
        (
            {"estimator": "hist_gradient_boosting", "params": {"l2_regularization": -1}},
            "params.l2_regularization",
        ),
        ({"estimator": "hist_gradient_boosting", "params": {"max_iter": "100"}}, "params.max_iter"),
        ({"estimator": "random_forest"}, "estimator"),
        ({"estimator": None}, "estimator"),
    ],
)
def test_a_parameter_the_estimator_does_not_take_is_422_naming_it(
    api: Api, body: dict[str, object], field: str
) -> None:
    error = assert_error(api.client.post("/train", json=body), 422, "validation_error")
    assert [item["field"] for item in error["details"]] == [field]
    assert api.queue.submitted == []


def test_an_unknown_estimator_lists_the_estimators(api: Api) -> None:
    response = api.client.post("/train", json={"estimator": "random_forest"})
    item = assert_error(response, 422, "validation_error")["details"][0]
    assert item["allowed"] == ["logistic_regression", "hist_gradient_boosting"]


def test_an_idempotency_key_tells_the_estimators_apart(api: Api) -> None:
    headers = {"Idempotency-Key": "which-model"}
    first = api.client.post("/train", json={}, headers=headers)
    spelled_out = api.client.post(
        "/train", json={"estimator": "logistic_regression"}, headers=headers
    )
    assert spelled_out.json()["job_id"] == first.json()["job_id"]
    other = api.client.post("/train", json={"estimator": "hist_gradient_boosting"}, headers=headers)
    assert_error(other, 422, "idempotency_conflict")


def test_the_schema_ties_params_to_the_estimator(api: Api) -> None:
    """What the validation does, the contract says (a fuzzer trusts the schema): params is
    BoostingTrainParams when the estimator is hist_gradient_boosting, TrainParams otherwise."""
    schemas = api.client.get("/openapi.json").json()["components"]["schemas"]
    request = schemas["TrainRequest"]
    assert request["if"] == {
        "properties": {"estimator": {"const": "hist_gradient_boosting"}},
        "required": ["estimator"],
    }
    assert request["then"]["properties"]["params"]["$ref"].endswith("/BoostingTrainParams")
    assert request["else"]["properties"]["params"]["$ref"].endswith("/TrainParams")
    boosting = schemas["BoostingTrainParams"]
    assert boosting["additionalProperties"] is False
    defaults = {name: field.get("default") for name, field in boosting["properties"].items()}
    assert defaults == BoostingParams().as_dict()
    integer, null = boosting["properties"]["max_depth"]["anyOf"]  # bounds a fuzzer can read
    assert integer == {"type": "integer", "minimum": 1, "maximum": 32} and null == {"type": "null"}
