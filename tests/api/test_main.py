"""The app as a whole: factory, request ids, the one error shape, the OpenAPI document."""

from __future__ import annotations

import logging

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
    assert "POST" in response.headers["allow"]


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


def test_openapi_documents_every_error_with_the_shape(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    expected = {
        ("/train", "post"): {"202", "401", "413", "422", "503", "500"},
        ("/jobs", "get"): {"200", "422", "503", "500"},
        ("/jobs/{job_id}", "get"): {"200", "404", "422", "503", "500"},
        ("/jobs/{job_id}", "delete"): {"202", "401", "404", "409", "422", "503", "500"},
        ("/predict", "post"): {"200", "413", "422", "503", "500"},
        ("/datasets", "get"): {"200", "500"},
        ("/datasets", "post"): {"201", "401", "413", "415", "422", "500"},
        ("/models", "get"): {"200", "500"},
        ("/models/{version}", "get"): {"200", "404", "422", "500"},
        ("/models/{version}/promote", "post"): {"200", "401", "404", "409", "422", "500"},
        ("/models/rollback", "post"): {"200", "401", "409", "500"},
        ("/healthz", "get"): {"200", "500"},
        ("/readyz", "get"): {"200", "503", "500"},
    }
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
