"""Request body limits, CORS, and error answers that carry no internals.

The body-limit tests call the app as ASGI directly where they must see what was read: a
declared oversize body is refused before any of it is received, and a chunked one as soon as
it crosses the limit.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from api.schemas.predictions import MAX_RECORDS
from shared.data.schema import FEATURE_COLUMNS, VOCABULARY
from shared.settings import Settings
from tests.api.conftest import Api, MakeApi, assert_error
from tests.api.routes.test_predict import RECORD

LIMIT = 2_000


def longest_record() -> dict[str, str]:
    return {column: max(VOCABULARY[column], key=len) for column in FEATURE_COLUMNS}


def test_the_default_limit_fits_the_largest_prediction_request(api: Api) -> None:
    body = {"records": [longest_record()] * MAX_RECORDS}
    size = len(json.dumps(body).encode())
    assert size < Settings().max_json_body_bytes
    response = api.client.post("/predict", json=body)
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == MAX_RECORDS


def test_a_body_over_the_limit_is_a_413_in_the_error_shape(make_api: MakeApi) -> None:
    api = make_api(max_json_body_bytes=LIMIT)
    body = {"records": [RECORD] * 40}
    assert len(json.dumps(body)) > LIMIT
    response = api.client.post("/predict", json=body)
    error = assert_error(response, 413, "body_too_large")
    assert error["details"] == {"max_bytes": LIMIT}
    assert api.predictor.calls == []
    assert api.client.post("/predict", json={"records": [RECORD]}).status_code == 200


def test_training_bodies_are_limited_too(make_api: MakeApi) -> None:
    api = make_api(max_json_body_bytes=LIMIT)
    response = api.client.post("/train", json={"dataset": "x" * LIMIT})
    assert_error(response, 413, "body_too_large")
    assert api.queue.submitted == []


class AsgiCall:
    """One request straight through the ASGI app, recording every body chunk it took."""

    def __init__(self, api: Api, headers: list[tuple[bytes, bytes]], chunks: list[bytes]) -> None:
        self.app = api.client.app
        self.headers = [(b"content-type", b"application/json"), *headers]
        self.chunks = chunks
        self.taken = 0
        self.status = 0
        self.body = b""

    async def receive(self) -> dict[str, Any]:
        if self.taken < len(self.chunks):
            self.taken += 1
            more = self.taken < len(self.chunks)
            return {"type": "http.request", "body": self.chunks[self.taken - 1], "more_body": more}
        await asyncio.sleep(60)
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        elif message["type"] == "http.response.body":
            self.body += message.get("body", b"")

    def run(self) -> AsgiCall:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/predict",
            "raw_path": b"/predict",
            "query_string": b"",
            "root_path": "",
            "headers": self.headers,
            "client": ("127.0.0.1", 5000),
            "server": ("testserver", 80),
        }
        asyncio.run(asyncio.wait_for(self.app(scope, self.receive, self.send), timeout=10))
        return self


def test_a_declared_oversize_body_is_refused_before_any_of_it_is_read(make_api: MakeApi) -> None:
    api = make_api(max_json_body_bytes=LIMIT)
    chunks = [b"x" * 1000] * 50
    call = AsgiCall(api, [(b"content-length", b"50000")], chunks).run()
    assert call.status == 413
    assert call.taken == 0
    assert json.loads(call.body)["error"]["code"] == "body_too_large"


def test_a_chunked_body_is_refused_once_it_crosses_the_limit(make_api: MakeApi) -> None:
    api = make_api(max_json_body_bytes=LIMIT)
    chunks = [b"x" * 500] * 100  # 50 kB, no Content-Length
    call = AsgiCall(api, [], chunks).run()
    assert call.status == 413
    assert call.taken == LIMIT // 500 + 1  # the chunk that crossed it, and not one more


def test_uploads_keep_their_own_larger_limit(make_api: MakeApi) -> None:
    api = make_api(max_json_body_bytes=LIMIT)
    csv = (api.data_dir / "synthetic_default.csv").read_bytes()[:20_000]
    csv = csv[: csv.rindex(b"\n") + 1]
    assert len(csv) > LIMIT
    response = api.client.post("/datasets", files={"file": ("cases.csv", csv, "text/csv")})
    assert response.status_code == 201, response.text
    small = make_api(max_json_body_bytes=LIMIT, max_upload_bytes=5_000)
    response = small.client.post("/datasets", files={"file": ("cases.csv", csv, "text/csv")})
    assert_error(response, 413, "upload_too_large")


# --- CORS -------------------------------------------------------------------------------------

ORIGIN = "https://dashboard.example"


def preflight(api: Api, origin: str) -> Any:
    return api.client.options(
        "/predict",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-api-key",
        },
    )


def test_cors_is_off_unless_configured(api: Api) -> None:
    assert "access-control-allow-origin" not in preflight(api, ORIGIN).headers
    response = api.client.get("/models", headers={"Origin": ORIGIN})
    assert "access-control-allow-origin" not in response.headers


def test_configured_origins_are_allowed_and_others_are_not(make_api: MakeApi) -> None:
    api = make_api(cors_origins=f"{ORIGIN}, https://other.example")
    allowed = preflight(api, ORIGIN)
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    assert "x-api-key" in allowed.headers["access-control-allow-headers"].lower()
    assert preflight(api, "https://evil.example").status_code == 400
    response = api.client.get("/models", headers={"Origin": ORIGIN})
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert "x-request-id" in response.headers["access-control-expose-headers"].lower()


# --- no internals in any error answer ---------------------------------------------------------


def test_no_error_answer_carries_a_stack_trace(make_api: MakeApi) -> None:
    api = make_api(api_key="k", max_json_body_bytes=LIMIT)
    secret = "secret-internal-detail in /srv/app/module.py line 42"

    def explode(*_: Any, **__: Any) -> Any:
        raise RuntimeError(secret)

    api.jobs.list = explode  # type: ignore[method-assign]
    answers = {
        500: api.client.get("/jobs"),
        401: api.client.post("/train", json={}),
        413: api.client.post("/predict", json={"records": [RECORD] * 40}),
        404: api.client.get("/jobs/" + "0" * 32),
        422: api.client.post("/predict", json={"records": [{"age_group": "old"}]}),
    }
    api.server.connected = False
    answers[503] = api.client.get("/jobs/" + "1" * 32)
    for status, response in answers.items():
        assert response.status_code == status, (status, response.text)
        error = assert_error(response, status, response.json()["error"]["code"])
        for leak in ("Traceback", 'File "', "secret-internal-detail", "RuntimeError", ".py"):
            assert leak not in response.text, (status, leak)
        assert error["request_id"] == response.headers["x-request-id"]


@pytest.mark.parametrize("origins", ["", " , "])
def test_blank_origin_lists_mean_cors_off(origins: str) -> None:
    assert Settings(cors_origins=origins).cors_origin_list == []
