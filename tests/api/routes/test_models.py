"""The registry over HTTP: list, show, promote (gate and force), rollback."""

from __future__ import annotations

import pytest

from tests.api.conftest import Api, MakeApi, assert_error


def test_list_shows_versions_newest_first_with_key_metrics(api: Api) -> None:
    response = api.client.get("/models")
    assert response.status_code == 200
    body = response.json()
    assert body["production"] == "v1"
    v2, v1 = body["versions"]
    assert (v1["version"], v2["version"]) == ("v1", "v2")
    assert v1["promoted"] is True and v2["promoted"] is False
    assert v1["gate"]["passed"] is True and v1["gate"]["reasons"] == []
    assert v2["gate"]["passed"] is False and "roc_auc" in v2["gate"]["reasons"][0]
    assert set(v1["metrics"]) == {
        "roc_auc", "accuracy", "balanced_accuracy", "precision", "recall", "f1", "log_loss",
        "brier",
    }  # fmt: skip
    assert v1["metrics"]["roc_auc"] > 0.7
    assert v1["dataset"]["name"] == "synthetic_20000_7.csv"
    assert v1["rows"]["read"] == 20_000
    assert v1["created_at"]


def test_list_of_an_empty_registry(make_api: MakeApi) -> None:
    api = make_api(models="empty")
    assert api.client.get("/models").json() == {"production": None, "versions": []}


def test_show_returns_the_full_metadata(api: Api) -> None:
    response = api.client.get("/models/v1")
    assert response.status_code == 200
    body = response.json()
    assert body == api.registry.get("v1").metadata
    assert "group_metrics" in body and "sex" in body["group_metrics"]


def test_show_an_unknown_version_is_404(api: Api) -> None:
    for version in ("v9", "v01", "v1.0", "production.json", ".staging"):
        error = assert_error(api.client.get(f"/models/{version}"), 404, "version_not_found")
        assert version in error["message"]


def test_promoting_a_version_that_failed_its_gate_needs_force(api: Api) -> None:
    error = assert_error(api.client.post("/models/v2/promote"), 409, "gate_failed")
    assert error["details"]["version"] == "v2"
    assert api.registry.production_version() == "v1"
    assert_error(api.client.post("/models/v2/promote", json={"force": False}), 409, "gate_failed")
    response = api.client.post("/models/v2/promote", json={"force": True})
    assert response.status_code == 200, response.text
    assert response.json() == {"production": "v2", "history": ["v1"]}
    assert api.client.get("/models").json()["production"] == "v2"


def test_promote_an_unknown_version_is_404(api: Api) -> None:
    assert_error(api.client.post("/models/v7/promote"), 404, "version_not_found")


@pytest.mark.parametrize("force", ["maybe", "true", 1, 0])
def test_promote_with_a_bad_body_is_422(api: Api, force: object) -> None:
    """``force`` is a JSON boolean: ``0`` is not ``false`` (the fuzzer found it promoting)."""
    error = assert_error(
        api.client.post("/models/v2/promote", json={"force": force}), 422, "validation_error"
    )
    assert error["details"][0]["field"] == "force"
    assert api.registry.production_version() == "v1"


def test_promote_with_a_body_that_is_not_utf8_is_422(api: Api) -> None:
    response = api.client.post(
        "/models/v1/promote", content=b"8\xe5\r\xf3", headers={"content-type": "application/json"}
    )
    assert assert_error(response, 422, "validation_error")["details"][0]["type"] == "json_invalid"


def test_rollback_goes_back_and_then_has_nowhere_to_go(api: Api) -> None:
    api.client.post("/models/v2/promote", json={"force": True})
    response = api.client.post("/models/rollback")
    assert response.status_code == 200
    assert response.json() == {"production": "v1", "history": []}
    error = assert_error(api.client.post("/models/rollback"), 409, "conflict")
    assert "nothing to roll back" in error["message"]
