"""The optional API key: what it closes, what it leaves open, how it is presented, and that a
refused request changes nothing."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from api.main import create_app
from shared.settings import Settings
from tests.api.conftest import Api, MakeApi, assert_error
from tests.api.routes.test_predict import RECORD

KEY = "correct horse battery staple"
CSV = b"age_group,sex,death_yn\n80+ Years,Male,Yes\n"


def writes() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        ("POST", "/train", {"json": {}}),
        # an id no job has (a fixed one: parallel runs must collect the same test ids)
        ("POST", f"/jobs/{'1' * 32}/cancel", {}),
        ("POST", "/datasets", {"files": {"file": ("cases.csv", CSV, "text/csv")}}),
        ("POST", "/models/v1/promote", {}),
        ("POST", "/models/rollback", {}),
        ("DELETE", "/models/v2", {}),
    ]


READS: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/jobs", {}),
    ("GET", f"/jobs/{'0' * 32}", {}),
    ("GET", "/datasets", {}),
    ("GET", "/models", {}),
    ("GET", "/models/v1", {}),
    ("GET", "/models/v1/compare/v2", {}),
    ("POST", "/predict", {"json": {"records": [RECORD]}}),
    ("GET", "/metrics", {}),
]
PROBES = ["/healthz", "/readyz"]


def call(api: Api, method: str, path: str, kwargs: dict[str, Any], **headers: str) -> Any:
    return api.client.request(method, path, headers=headers, **kwargs)


@pytest.fixture
def keyed(make_api: MakeApi) -> Api:
    return make_api(api_key=KEY)


@pytest.mark.parametrize(("method", "path", "kwargs"), writes())
def test_without_a_key_configured_writes_are_open(
    api: Api, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    assert call(api, method, path, kwargs).status_code != 401


@pytest.mark.parametrize(("method", "path", "kwargs"), writes())
def test_with_a_key_every_write_needs_it(
    keyed: Api, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    response = call(keyed, method, path, kwargs)
    error = assert_error(response, 401, "unauthorized")
    assert "X-API-Key" in error["message"]
    assert response.headers["www-authenticate"].startswith("Bearer realm=")


@pytest.mark.parametrize(("method", "path", "kwargs"), writes())
def test_a_wrong_key_is_refused(keyed: Api, method: str, path: str, kwargs: dict[str, Any]) -> None:
    for headers in ({"X-API-Key": KEY + "x"}, {"Authorization": "Bearer nope"}):
        response = call(keyed, method, path, kwargs, **headers)
        assert_error(response, 401, "unauthorized")
        assert 'error="invalid_token"' in response.headers["www-authenticate"]


@pytest.mark.parametrize(
    "headers",
    [{"Authorization": f"Bearer {KEY}"}, {"authorization": f"bearer {KEY}"}, {"X-API-Key": KEY}],
)
def test_the_key_is_accepted_as_bearer_or_header(keyed: Api, headers: dict[str, str]) -> None:
    response = keyed.client.post("/models/v1/promote", headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["production"] == "v1"


def test_other_authorization_schemes_are_not_the_key(keyed: Api) -> None:
    response = keyed.client.post("/models/rollback", headers={"Authorization": f"Basic {KEY}"})
    assert_error(response, 401, "unauthorized")


def test_a_refused_write_changes_nothing(keyed: Api) -> None:
    assert keyed.client.post("/train", json={}).status_code == 401
    assert keyed.queue.submitted == [] and keyed.jobs.list() == []
    before = keyed.registry.production_version()
    assert keyed.client.post("/models/v2/promote", json={"force": True}).status_code == 401
    assert keyed.registry.production_version() == before
    files = sorted(p.name for p in keyed.data_dir.iterdir())
    assert keyed.client.post("/datasets", files={"file": ("x.csv", CSV)}).status_code == 401
    assert sorted(p.name for p in keyed.data_dir.iterdir()) == files


@pytest.mark.parametrize(("method", "path", "kwargs"), READS)
def test_reads_and_predictions_stay_open_by_default(
    keyed: Api, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    assert call(keyed, method, path, kwargs).status_code != 401


@pytest.mark.parametrize(("method", "path", "kwargs"), READS)
def test_reads_can_be_closed_too(
    make_api: MakeApi, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    api = make_api(api_key=KEY, api_key_required_for_reads=True)
    assert_error(call(api, method, path, kwargs), 401, "unauthorized")
    assert call(api, method, path, kwargs, **{"X-API-Key": KEY}).status_code != 401


@pytest.mark.parametrize("path", PROBES)
def test_probes_never_need_the_key(make_api: MakeApi, path: str) -> None:
    api = make_api(api_key=KEY, api_key_required_for_reads=True)
    assert api.client.get(path).status_code in (200, 503)


def test_closing_reads_without_a_key_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="API_KEY"):
        create_app(Settings(api_key_required_for_reads=True))
    with pytest.raises(ValueError, match="API_KEY"):
        create_app(Settings(api_key="", api_key_required_for_reads=True))


def test_an_empty_key_means_no_key(make_api: MakeApi) -> None:
    api = make_api(api_key="")
    assert api.client.post("/models/rollback").status_code != 401


def test_a_missing_key_is_warned_about_at_start(
    make_api: MakeApi, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="api.main"):
        make_api()
    assert any("API_KEY is not set" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="api.main"):
        make_api(api_key=KEY)
    assert not any("API_KEY" in r.getMessage() for r in caplog.records)


def test_the_key_never_shows_in_settings_output() -> None:
    settings = Settings(api_key=KEY)
    assert KEY not in repr(settings) and KEY not in str(settings.model_dump())


WRITE_OPERATIONS = {
    ("/train", "post"),
    ("/jobs/{job_id}/cancel", "post"),
    ("/datasets", "post"),
    ("/models/{version}/promote", "post"),
    ("/models/rollback", "post"),
    ("/models/{version}", "delete"),
}
READ_OPERATIONS = {
    ("/jobs", "get"),
    ("/jobs/{job_id}", "get"),
    ("/datasets", "get"),
    ("/models", "get"),
    ("/models/{version}", "get"),
    ("/models/{a}/compare/{b}", "get"),
    ("/predict", "post"),
    ("/metrics", "get"),
}


def secured_operations(spec: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (path, method)
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        if operation.get("security")
    }


def with_401(spec: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (path, method)
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        if "401" in operation["responses"]
    }


def test_without_a_key_openapi_declares_no_security_and_no_401(api: Api) -> None:
    """Nothing asks for a key, so no client should expect a 401 (issue #10)."""
    spec = api.client.get("/openapi.json").json()
    assert "securitySchemes" not in spec.get("components", {})
    assert secured_operations(spec) == set()
    assert with_401(spec) == set()


def test_with_a_key_openapi_shows_the_security_schemes_on_the_writes(keyed: Api) -> None:
    spec = keyed.client.get("/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["BearerApiKey"] == {
        **schemes["BearerApiKey"],
        "type": "http",
        "scheme": "bearer",
    }
    assert schemes["ApiKeyHeader"]["type"] == "apiKey"
    assert (
        schemes["ApiKeyHeader"]["in"] == "header" and schemes["ApiKeyHeader"]["name"] == "X-API-Key"
    )
    assert secured_operations(spec) == WRITE_OPERATIONS
    assert with_401(spec) == WRITE_OPERATIONS
    for path, method in WRITE_OPERATIONS:
        operation = spec["paths"][path][method]
        # either scheme will do: two alternatives, one scheme each
        assert operation["security"] == [{"BearerApiKey": []}, {"ApiKeyHeader": []}]
        unauthorized = operation["responses"]["401"]
        assert unauthorized["content"]["application/json"]["schema"]["$ref"].endswith(
            "/ErrorResponse"
        )
        assert "WWW-Authenticate" in unauthorized["headers"]


def test_with_reads_closed_openapi_secures_the_reads_too(make_api: MakeApi) -> None:
    api = make_api(api_key=KEY, api_key_required_for_reads=True)
    spec = api.client.get("/openapi.json").json()
    assert secured_operations(spec) == WRITE_OPERATIONS | READ_OPERATIONS
    assert with_401(spec) == WRITE_OPERATIONS | READ_OPERATIONS


@pytest.mark.parametrize("closed", [False, True])
def test_openapi_security_matches_what_the_server_enforces(make_api: MakeApi, closed: bool) -> None:
    """Every documented operation, called without the key: 401 exactly where OpenAPI says."""
    api = make_api(api_key=KEY, api_key_required_for_reads=closed)
    spec = api.client.get("/openapi.json").json()
    job_id, version = "0" * 32, "v1"
    refused = set()
    for path, operations in spec["paths"].items():
        url = path.replace("{job_id}", job_id).replace("{version}", version)
        for method in operations:
            if api.client.request(method.upper(), url).status_code == 401:
                refused.add((path, method))
    assert refused == secured_operations(spec)
