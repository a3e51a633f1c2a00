"""GET /models/{a}/compare/{b}: two registry versions side by side, over HTTP."""

from __future__ import annotations

import pytest
from threadpoolctl import threadpool_limits

from shared.data.schema import FEATURE_COLUMNS, GROUP_COLUMNS, VOCABULARY
from shared.model.evaluation import KEY_METRICS
from shared.model.pipeline import BoostingParams
from shared.model.training import TrainingRun, register_run, train_model
from tests.api.conftest import Api, assert_error
from tests.conftest import MakeDataset

PATH = "/models/{a}/compare/{b}"


@pytest.fixture(scope="module")
def boosting_run(make_dataset: MakeDataset) -> TrainingRun:
    """Gradient boosting on the data v1 was trained on (few trees: cheap)."""
    with threadpool_limits(1):
        return train_model(make_dataset(20_000, 7), BoostingParams(max_iter=20))


@pytest.fixture
def with_boosting(api: Api, boosting_run: TrainingRun) -> str:
    return register_run(api.registry, boosting_run, promote=False).version.version


def test_two_estimators_side_by_side(api: Api, with_boosting: str) -> None:
    response = api.client.get(f"/models/v1/compare/{with_boosting}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["difference"] == "b - a"
    assert body["a"]["version"] == "v1" and body["b"]["version"] == with_boosting
    assert body["a"]["estimator"] == "logistic_regression"
    assert body["b"]["estimator"] == "hist_gradient_boosting"
    assert (body["a"]["evaluated_by"], body["b"]["evaluated_by"]) == ("coefficients", "trees")
    assert body["a"]["dataset"]["name"] == body["b"]["dataset"]["name"] == "synthetic_20000_7.csv"
    assert body["same_test_rows"] is True

    meta_a = api.registry.get("v1").metadata
    meta_b = api.registry.get(with_boosting).metadata
    assert set(body["metrics"]) == set(KEY_METRICS)
    auc = body["metrics"]["roc_auc"]
    assert (auc["a"], auc["b"]) == (meta_a["metrics"]["roc_auc"], meta_b["metrics"]["roc_auc"])
    assert auc["difference"] == pytest.approx(auc["b"] - auc["a"])
    assert auc["better"] == ("b" if auc["difference"] > 0 else "a")
    assert set(body["group_metrics"]) == set(GROUP_COLUMNS)
    male = body["group_metrics"]["sex"]["Male"]["recall"]
    assert male["a"] == meta_a["group_metrics"]["sex"]["Male"]["recall"]
    assert male["b"] == meta_b["group_metrics"]["sex"]["Male"]["recall"]

    found = body["disagreement"]
    assert found["total"] == 95_040
    assert 0 < found["combinations"] < found["total"]
    assert found["share"] == found["combinations"] / found["total"]
    assert 0 <= found["mass_under_a"] <= 1 and 0 <= found["mass_under_b"] <= 1
    assert 0 < found["largest_difference"] <= 1
    at = found["largest_at"]
    assert list(at) == list(FEATURE_COLUMNS)
    assert all(at[column] in VOCABULARY[column] for column in FEATURE_COLUMNS)
    assert abs(found["probability_b"] - found["probability_a"]) == pytest.approx(
        found["largest_difference"]
    )
    assert found["seconds"] > 0


def test_a_pair_compared_again_is_the_same_answer_from_the_cache(
    api: Api, with_boosting: str
) -> None:
    first = api.client.get(f"/models/{with_boosting}/compare/v2").json()
    again = api.client.get(f"/models/{with_boosting}/compare/v2").json()
    assert again["cached"] is True
    assert {**first, "cached": True} == again


def test_a_version_compared_with_itself_agrees_everywhere(api: Api) -> None:
    response = api.client.get("/models/v2/compare/v2")
    assert response.status_code == 200, response.text
    found = response.json()["disagreement"]
    assert (found["combinations"], found["share"], found["largest_difference"]) == (0, 0.0, 0.0)
    assert found["mass_under_a"] == found["mass_under_b"] == 0.0
    assert found["largest_at"] is None
    assert all(d["difference"] in (0, None) for d in response.json()["metrics"].values())


@pytest.mark.parametrize(
    ("a", "b", "unknown"), [("v1", "v9", "v9"), ("v9", "v1", "v9"), ("v01", "v1", "v01")]
)
def test_an_unknown_version_is_404_naming_it(api: Api, a: str, b: str, unknown: str) -> None:
    error = assert_error(api.client.get(f"/models/{a}/compare/{b}"), 404, "version_not_found")
    assert unknown in error["message"] and error["details"] == {"version": unknown}


def test_the_other_model_routes_are_untouched(api: Api) -> None:
    assert api.client.get("/models/v1").json()["version"] == "v1"
    response = api.client.get("/models/rollback")
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "POST, OPTIONS"
    assert_error(api.client.post("/models/v1/compare/v2"), 405, "method_not_allowed")


def test_openapi_documents_the_comparison(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    assert set(spec["paths"][PATH]) == {"get"}
    operation = spec["paths"][PATH]["get"]
    names = [(p["name"], p["in"], p["schema"]["pattern"]) for p in operation["parameters"]]
    assert names == [("a", "path", r"^v[1-9][0-9]*$"), ("b", "path", r"^v[1-9][0-9]*$")]
    ok = operation["responses"]["200"]
    schema = ok["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/ComparisonOut"}
    assert {"ShowModelA", "ShowModelB", "PromoteModelB"} <= set(ok["links"])
    assert {"404", "422", "500"} <= set(operation["responses"])
    fields = spec["components"]["schemas"]["DisagreementOut"]["properties"]
    assert {"share", "mass_under_a", "mass_under_b", "largest_at"} <= set(fields)
