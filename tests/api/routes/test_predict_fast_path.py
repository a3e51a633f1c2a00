"""POST /predict's fast path (orjson + dict lookups) accepts exactly what PredictRequest
accepts, and encodes it the same; everything else gets pydantic's own 422."""

from __future__ import annotations

import json
import random
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from api.routes.predict import _fast_encode, encode_records
from api.schemas.predictions import MAX_RECORDS, PredictRequest
from shared.data.schema import FEATURE_COLUMNS, VOCABULARY
from tests.api.conftest import Api, assert_error

ODD_VALUES: list[Any] = [None, 1, 0, True, 1.5, "", "yes", "YES", " Yes", ["Yes"], {"v": 1}]


def random_record(rng: random.Random, broken: bool) -> Any:
    record: dict[str, Any] = {
        col: rng.choice(VOCABULARY[col]) for col in FEATURE_COLUMNS if rng.random() < 0.7
    }
    record["age_group"] = rng.choice(VOCABULARY["age_group"])
    if broken:
        kind = rng.randrange(4)
        if kind == 0:
            record[rng.choice(FEATURE_COLUMNS)] = rng.choice(ODD_VALUES)
        elif kind == 1:
            del record["age_group"]
        elif kind == 2:
            record[rng.choice(["death_yn", "extra", "Sex"])] = "Yes"
        else:
            return rng.choice([None, 1, "record", [record]])
    return record


def pydantic_codes(data: Any) -> tuple[np.ndarray, bool] | None:
    try:
        request = PredictRequest.model_validate(data)
    except ValidationError:
        return None
    return encode_records(request.records), request.explain


@pytest.mark.parametrize("seed", range(20))
def test_the_fast_path_accepts_and_encodes_exactly_what_pydantic_does(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(50):
        records = [random_record(rng, rng.random() < 0.05) for _ in range(rng.randrange(1, 8))]
        bodies: list[Any] = [{"records": records}]
        if rng.random() < 0.2:
            bodies += [{"records": records, "x": 1}, {"records": []}, {}, records, None]
        if rng.random() < 0.3:
            explain = rng.choice([True, False, None, 1, 0, "true", [True]])
            bodies += [{"records": records, "explain": explain}, {"explain": True}]
            bodies += [{"records": records, "explain": True, "x": 1}]
        for body in bodies:
            data = json.loads(json.dumps(body))
            fast, slow = _fast_encode(data), pydantic_codes(data)
            assert (fast is None) == (slow is None), body
            if fast is not None and slow is not None:
                np.testing.assert_array_equal(fast[0], slow[0])
                assert fast[1] is slow[1]
                assert fast[0].dtype == np.int8 and fast[0].shape == (len(records), 7)


def test_the_record_limit_is_the_schemas() -> None:
    record = {"age_group": "80+ Years"}
    assert _fast_encode({"records": [record] * MAX_RECORDS}) is not None
    assert _fast_encode({"records": [record] * (MAX_RECORDS + 1)}) is None


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        ("application/json", 200),
        ("application/json; charset=utf-8", 200),
        ("application/vnd.example+json", 200),
        ("text/plain", 422),
        (None, 422),
    ],
)
def test_content_types_are_handled_as_fastapi_does(
    api: Api, content_type: str | None, status: int
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    body = json.dumps({"records": [{"age_group": "80+ Years"}]})
    response = api.client.post("/predict", content=body, headers=headers)
    assert response.status_code == status, response.text


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"", "body"),
        (b"{not json", "body"),
        (b"[1, 2]", "body"),
        (b'{"records": null}', "records"),
        (b"\x00\xff\xfe&m", "body"),  # not UTF-8 (found by a fuzzer: it was a 500)
        (b'{"records": [{"age_group": "\xff"}]}', "body"),
    ],
)
def test_unusable_bodies_are_422_in_the_one_shape(api: Api, body: bytes, field: str) -> None:
    response = api.client.post(
        "/predict", content=body, headers={"content-type": "application/json"}
    )
    error = assert_error(response, 422, "validation_error")
    assert error["details"][0]["field"] == field
    assert api.predictor.calls == []


def test_openapi_still_documents_the_request_body(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    body = spec["paths"]["/predict"]["post"]["requestBody"]
    assert body["required"] is True
    schema = body["content"]["application/json"]["schema"]
    assert (
        schema["required"] == ["records"]
        and schema["properties"]["records"]["maxItems"] == MAX_RECORDS
    )
    record = schema["properties"]["records"]["items"]
    assert record["required"] == ["age_group"]
    assert set(record["properties"]) == set(FEATURE_COLUMNS)
    assert "$ref" not in json.dumps(schema)
