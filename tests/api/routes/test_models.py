"""The registry over HTTP: list (paged), show, promote (gate and force), rollback, delete."""

from __future__ import annotations

import json

import pytest

from shared.registry_events import alias_channel
from tests.api.conftest import Api, MakeApi, assert_error
from tests.shared.registry.helper import tiny_model


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
    assert api.client.get("/models").json() == {
        "production": None,
        "history": [],
        "versions": [],
        "total": 0,
        "limit": 20,
        "next_cursor": None,
        "next": None,
    }


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


# -- paging ----------------------------------------------------------------------------------


def test_the_list_pages_newest_first_following_next(api: Api) -> None:
    for i in range(4):  # v3..v6 beside the trained v1 and v2
        api.registry.save_version(tiny_model(i), {"i": i})
    first = api.client.get("/models", params={"limit": 4}).json()
    assert [v["version"] for v in first["versions"]] == ["v6", "v5", "v4", "v3"]
    assert (first["total"], first["limit"], first["production"]) == (6, 4, "v1")
    assert (first["next_cursor"], first["next"]) == ("v3", "/models?limit=4&cursor=v3")
    second = api.client.get(first["next"]).json()
    assert [v["version"] for v in second["versions"]] == ["v2", "v1"]
    assert second["versions"][1]["promoted"] is True
    assert (second["next_cursor"], second["next"]) == (None, None)
    assert len(api.client.get("/models").json()["versions"]) == 6  # default page: 20


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "v01"}, "cursor"),
        ({"cursor": "../v1"}, "cursor"),
    ],
)
def test_a_bad_page_request_is_422_naming_the_field(
    api: Api, query: dict[str, object], field: str
) -> None:
    error = assert_error(api.client.get("/models", params=query), 422, "validation_error")
    assert error["details"][0]["field"] == field


# -- deleting --------------------------------------------------------------------------------


def test_delete_removes_a_version_everywhere_and_announces_it(api: Api) -> None:
    subscription = api.services.redis.pubsub(ignore_subscribe_messages=True)
    subscription.subscribe(alias_channel(api.settings.redis_prefix))

    response = api.client.delete("/models/v2")

    assert response.status_code == 200, response.text
    assert response.json() == {"deleted": "v2"}
    listed = api.client.get("/models").json()
    assert [v["version"] for v in listed["versions"]] == ["v1"] and listed["total"] == 1
    assert_error(api.client.get("/models/v2"), 404, "version_not_found")
    assert_error(api.client.delete("/models/v2"), 404, "version_not_found")
    promote = api.client.post("/models/v2/promote", json={"force": True})
    assert_error(promote, 404, "version_not_found")
    heard = [subscription.get_message(timeout=0.1) for _ in range(5)]  # bounded: 5 reads
    announced = [json.loads(m["data"]) for m in heard if m is not None]
    assert announced == [{"version": "v2", "action": "delete"}]
    assert api.registry.save_version(tiny_model(), {}).version == "v3"  # never v2 again


def test_delete_refuses_production_and_the_rollback_history(api: Api) -> None:
    error = assert_error(api.client.delete("/models/v1"), 409, "version_in_use")
    assert error["message"].startswith("v1 is the production version")
    assert api.client.post("/models/v2/promote", json={"force": True}).status_code == 200
    error = assert_error(api.client.delete("/models/v1"), 409, "version_in_use")
    assert error["message"].startswith("v1 is in the rollback history (position 1)")
    assert error["details"] == {"version": "v1", "reason": "rollback_history", "position": 1}
    listed = api.client.get("/models").json()
    assert (listed["production"], listed["history"], listed["total"]) == ("v2", ["v1"], 2)


def test_delete_of_what_is_not_a_listed_version(api: Api) -> None:
    for version in ("v9", "v01", "production.json"):
        assert_error(api.client.delete(f"/models/{version}"), 404, "version_not_found")
    response = api.client.delete("/models/rollback")
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "POST, OPTIONS"
    assert api.client.get("/models").json()["total"] == 2
