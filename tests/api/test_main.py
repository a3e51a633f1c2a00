"""The app as a whole: factory, request ids, the one error shape, the OpenAPI document."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from tests.api.conftest import Api, MakeApi, assert_error
from tests.api.routes.test_predict import RECORD


def test_importing_the_module_level_app_connects_to_nothing() -> None:
    """``api.main.app`` exists without Redis (the test suite has none on its URL)."""
    from api import main

    assert main.app.state.services is None


def test_the_lifespan_closes_the_prediction_client(make_api: MakeApi) -> None:
    api = make_api()
    api.client.__exit__(None, None, None)
    assert api.predictor.closed


def test_a_request_id_is_generated_and_echoed(api: Api) -> None:
    first = api.client.get("/healthz").headers["x-request-id"]
    second = api.client.get("/healthz").headers["x-request-id"]
    assert first and second and first != second


def test_a_sane_incoming_request_id_is_kept(api: Api) -> None:
    response = api.client.get("/jobs/nope", headers={"X-Request-ID": "edge-1234.abc:7"})
    assert response.headers["x-request-id"] == "edge-1234.abc:7"
    assert assert_error(response, 404, "job_not_found")["request_id"] == "edge-1234.abc:7"


@pytest.mark.parametrize("bad", ["x" * 200, "two words", "<script>", "-leading-dash"])
def test_an_insane_incoming_request_id_is_replaced(api: Api, bad: str) -> None:
    response = api.client.get("/healthz", headers={"X-Request-ID": bad})
    assert response.headers["x-request-id"] != bad
    assert len(response.headers["x-request-id"]) == 32


def test_an_unknown_route_is_404_in_the_shape(api: Api) -> None:
    assert_error(api.client.get("/nowhere"), 404, "not_found")


def test_a_wrong_method_is_405_in_the_shape(api: Api) -> None:
    response = api.client.put("/train")
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "POST, OPTIONS"


def documented_methods(spec: dict[str, Any], path: str) -> set[str]:
    return {method.upper() for method in spec["paths"][path]}


def test_allow_lists_every_documented_method_of_the_path(api: Api) -> None:
    """Not only those of the route that happened to match first (``/datasets`` has a GET and a
    POST route: a PUT used to be told ``Allow: GET``), whatever the method asked."""
    spec = api.client.get("/openapi.json").json()
    concrete = {"{job_id}": "0" * 32, "{version}": "v1"}
    for path in spec["paths"]:
        url = path
        for template, value in concrete.items():
            url = url.replace(template, value)
        expected = documented_methods(spec, path) | {"OPTIONS"}
        for method in {"GET", "POST", "PUT", "PATCH", "DELETE"} - expected:
            response = api.client.request(method, url)
            assert_error(response, 405, "method_not_allowed")
            assert set(response.headers["allow"].split(", ")) == expected, (method, path)


def test_options_answers_204_with_the_same_allow(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    for path, url in (
        ("/datasets", "/datasets"),
        ("/jobs/{job_id}", f"/jobs/{'0' * 32}"),
        ("/jobs/{job_id}/cancel", f"/jobs/{'0' * 32}/cancel"),
        ("/models/rollback", "/models/rollback"),
        ("/models/{version}", "/models/v1"),
    ):
        response = api.client.options(url)
        assert response.status_code == 204, (url, response.text)
        assert response.content == b""
        allowed = set(response.headers["allow"].split(", "))
        assert allowed == documented_methods(spec, path) | {"OPTIONS"}, url
        assert response.headers["x-request-id"]


def test_the_rollback_path_is_not_a_version(api: Api) -> None:
    """``/models/{version}`` would match ``/models/rollback``: GET there is the rollback
    resource's 405, not a lookup of a version named "rollback"."""
    response = api.client.get("/models/rollback")
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "POST, OPTIONS"


def test_an_unexpected_exception_is_a_500_without_internals(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    api.predictor.fail_with = RuntimeError("secret-internal-detail at /srv/app/x.py")
    with caplog.at_level(logging.ERROR, logger="api.errors"):
        response = api.client.post(
            "/predict", json={"records": [RECORD]}, headers={"X-Request-ID": "req-500"}
        )
    error = assert_error(response, 500, "internal_error")
    assert error["request_id"] == "req-500"
    assert "req-500" in error["message"]
    for leak in ("secret-internal-detail", "Traceback", "RuntimeError", "x.py"):
        assert leak not in response.text
    logged = [r for r in caplog.records if "req-500" in r.getMessage()]
    assert logged and logged[0].exc_info is not None  # the traceback is in the log


def test_a_missing_lifespan_is_a_clear_500_not_a_crash() -> None:
    client = TestClient(create_app(), raise_server_exceptions=False)  # no `with`: no lifespan
    response = client.get("/jobs")
    assert_error(response, 500, "internal_error")


@pytest.mark.parametrize("key", [None, "k"])
def test_openapi_documents_every_error_with_the_shape(make_api: MakeApi, key: str | None) -> None:
    """401 only where a key is asked for: only when the server has one (tests/api/test_security
    checks where)."""
    api = make_api(api_key=key)
    spec = api.client.get("/openapi.json").json()
    unauthorized = {"401"} if key else set()
    expected = {
        ("/train", "post"): {"202", "413", "422", "503", "500", *unauthorized},
        ("/jobs", "get"): {"200", "422", "503", "500"},
        ("/jobs/{job_id}", "get"): {"200", "404", "422", "503", "500"},
        ("/jobs/{job_id}/cancel", "post"): {"202", "404", "409", "422", "503", "500"}
        | unauthorized,
        ("/predict", "post"): {"200", "409", "413", "422", "503", "500"},
        ("/datasets", "get"): {"200", "500", "503"},
        ("/datasets", "post"): {"201", "413", "415", "422", "500", "503", *unauthorized},
        ("/models", "get"): {"200", "422", "500"},
        ("/models/{version}", "get"): {"200", "404", "422", "500"},
        ("/models/{version}", "delete"): {"200", "404", "409", "422", "500"} | unauthorized,
        ("/models/{version}/promote", "post"): {"200", "404", "409", "422", "500"} | unauthorized,
        ("/models/rollback", "post"): {"200", "409", "500", *unauthorized},
        ("/healthz", "get"): {"200", "500"},
        ("/readyz", "get"): {"200", "503", "500"},
    }
    assert set(spec["paths"]["/jobs/{job_id}"]) == {"get"}  # a cancel is not a DELETE
    for (path, method), statuses in expected.items():
        responses = spec["paths"][path][method]["responses"]
        assert set(responses) == statuses, (path, method)
        for status in statuses - {"200", "201", "202"}:
            schema = responses[status]["content"]["application/json"]["schema"]
            wanted = "Readiness" if path == "/readyz" and status == "503" else "ErrorResponse"
            assert schema["$ref"].endswith(f"/{wanted}"), (path, method, status)
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    upload = spec["paths"]["/datasets"]["post"]["requestBody"]["content"]
    assert upload["multipart/form-data"]["schema"]["properties"]["file"]["format"] == "binary"


def test_openapi_links_chain_the_operations(api: Api) -> None:
    """What clients (and the fuzzer's stateful phase) follow: train -> job -> cancel,
    upload -> train, list -> item."""
    spec = api.client.get("/openapi.json").json()
    paths = spec["paths"]

    def links(path: str, method: str, status: str) -> dict[str, Any]:
        return dict(paths[path][method]["responses"][status]["links"])

    train = links("/train", "post", "202")
    assert train["GetJob"]["operationRef"] == "#/paths/~1jobs~1{job_id}/get"
    assert train["CancelJob"]["operationRef"] == "#/paths/~1jobs~1{job_id}~1cancel/post"
    assert train["CancelJob"]["parameters"] == {"job_id": "$response.body#/job_id"}
    upload = links("/datasets", "post", "201")["TrainOnDataset"]
    assert upload["operationRef"] == "#/paths/~1train/post"
    assert upload["requestBody"] == {"dataset": "$response.body#/name"}
    assert "CancelJob" in links("/jobs/{job_id}/cancel", "post", "202")
    assert "PromoteModel" in links("/models", "get", "200")
    for operations in paths.values():
        for operation in operations.values():
            for response in operation["responses"].values():
                for found in response.get("links", {}).values():
                    target, method = found["operationRef"].removeprefix("#/paths/").rsplit("/", 1)
                    target = target.replace("~1", "/").replace("~0", "~")
                    assert method in paths[target], found


def test_openapi_patterns_are_those_of_the_stores(api: Api) -> None:
    """The schema says which ids and names are valid: exactly the strings the stores accept."""
    from shared.data import store as datasets
    from shared.jobs import store as jobs
    from shared.registry import versions

    spec = api.client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    dataset = schemas["TrainRequest"]["properties"]["dataset"]["anyOf"][0]
    assert dataset["pattern"] == datasets._NAME.pattern
    job_id = spec["paths"]["/jobs/{job_id}"]["get"]["parameters"][0]["schema"]
    assert job_id["pattern"] == jobs._ID_RE.pattern
    version = spec["paths"]["/models/{version}"]["get"]["parameters"][0]["schema"]
    assert version["pattern"] == versions._VERSION_RE.pattern
