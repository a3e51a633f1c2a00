"""POST /predict: the hot path. Validate, encode, await a prediction worker, answer.

Per-request work is kept small, and this route does its own body handling to keep it so:

- the body is parsed with orjson, and valid records (the common case) are checked and encoded
  in one pass of dict lookups into the (n, 7) code array the workers score: no pydantic model
  per record, no pandas. That is three times cheaper than FastAPI's parse-then-validate for a
  1,000-record body, and the schema's own vocabularies define exactly what passes.
  ``"explain": true`` rides along as a flag on the request's item in its batch, so explained
  requests share batches with the others and cost them nothing;
- anything the fast path does not accept is validated by :class:`PredictRequest` itself, so
  every error is pydantic's, with the same ``422`` body as any other endpoint (and the body
  handling mirrors FastAPI's: content type, invalid JSON, empty body);
- the answer is serialised once with orjson, not validated again against the response model;
- the route declares no FastAPI dependency: the read-key check
  (:func:`api.security.require_read_key`, the same function the other read endpoints declare
  as ``ReadAccess``) and the services are called directly. Resolving the dependency tree cost
  about 40 microseconds a request, a sixth of all the API's CPU for a one-record prediction.

OpenAPI still documents the request body (``PredictRequest``) and the response
(``PredictResponse``).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.types import Scope

from api.deps import get_services
from api.errors import error_responses
from api.queue.ports import PredictionResult
from api.schemas.predictions import MAX_RECORDS, CaseRecord, PredictRequest, PredictResponse
from api.security import checks_read_key, require_read_key
from shared.data.schema import FEATURE_COLUMNS, MISSING, VOCABULARY
from shared.model.evaluation import THRESHOLD

router = APIRouter(tags=["predictions"])

#: CDC string -> code, per feature column, in FEATURE_COLUMNS order.
_CODES = tuple({value: code for code, value in enumerate(VOCABULARY[c])} for c in FEATURE_COLUMNS)
_FIELDS = frozenset(FEATURE_COLUMNS)
_REQUIRED = "age_group"
assert tuple(CaseRecord.model_fields) == FEATURE_COLUMNS, "CaseRecord must follow FEATURE_COLUMNS"
assert [n for n, f in CaseRecord.model_fields.items() if f.is_required()] == [_REQUIRED]
assert all(f.default == MISSING for n, f in CaseRecord.model_fields.items() if n != _REQUIRED)


def _inline_schema() -> dict[str, Any]:
    """PredictRequest's JSON schema with its definitions inlined (an operation's own schema
    cannot point into ``$defs``)."""
    schema = PredictRequest.model_json_schema()
    defs = schema.pop("$defs", {})
    items = schema["properties"]["records"]["items"]
    schema["properties"]["records"]["items"] = defs[items["$ref"].rsplit("/", 1)[-1]]
    return schema


_OPENAPI_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": _inline_schema()}},
    }
}


def encode_records(records: list[CaseRecord]) -> np.ndarray:
    """Validated records -> the (n, 7) int8 code array the workers score."""
    status, sex, age, race, hosp, icu, medcond = _CODES
    return np.array(
        [
            (
                status[r.current_status],
                sex[r.sex],
                age[r.age_group],
                race[r.race_ethnicity_combined],
                hosp[r.hosp_yn],
                icu[r.icu_yn],
                medcond[r.medcond_yn],
            )
            for r in records
        ],
        dtype=np.int8,
    ).reshape(len(records), len(FEATURE_COLUMNS))


def _fast_encode(data: Any) -> tuple[np.ndarray, bool] | None:
    """The code array and the ``explain`` flag if ``data`` is a valid request body, else None
    (then pydantic decides).

    Exactly PredictRequest's rules: the key ``records`` and, optionally, ``explain`` (a
    boolean), nothing else; ``records`` a list of 1 to MAX_RECORDS objects, each with only the
    seven fields, ``age_group`` present, every value one of CDC's strings (a dict lookup fails
    for anything else: ``None``, numbers, lists).
    """
    if type(data) is not dict:
        return None
    explain: Any = False
    if len(data) != 1:
        explain = data.get("explain")
        if len(data) != 2 or type(explain) is not bool:
            return None
    records = data.get("records")
    if type(records) is not list or not 1 <= len(records) <= MAX_RECORDS:
        return None
    status, sex, age, race, hosp, icu, medcond = _CODES
    fields = _FIELDS
    try:
        rows = [
            (
                status[r.get("current_status", MISSING)],
                sex[r.get("sex", MISSING)],
                age[r["age_group"]],
                race[r.get("race_ethnicity_combined", MISSING)],
                hosp[r.get("hosp_yn", MISSING)],
                icu[r.get("icu_yn", MISSING)],
                medcond[r.get("medcond_yn", MISSING)],
            )
            for r in records
            if r.keys() <= fields  # a non-dict raises AttributeError below
        ]
    except (KeyError, TypeError, AttributeError):
        return None
    if len(rows) != len(records):
        return None
    return np.array(rows, dtype=np.int8).reshape(len(rows), len(FEATURE_COLUMNS)), explain


def _content_type(scope: Scope) -> str | None:
    for key, value in scope["headers"]:
        if key == b"content-type":
            return str(value.decode("latin-1"))
    return None


def _is_json(content_type: str | None) -> bool:
    """FastAPI's test: ``application/json`` or ``application/*+json``, parameters allowed."""
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    main, _, sub = media.partition("/")
    return main == "application" and (sub == "json" or sub.endswith("+json"))


def _codes(body: bytes, content_type: str | None) -> tuple[np.ndarray, bool]:
    """The code array and ``explain`` of a valid body; for any other, the 422 FastAPI would
    answer."""
    if body and _is_json(content_type):
        try:
            parsed = _fast_encode(orjson.loads(body))
        except orjson.JSONDecodeError:
            parsed = None
        if parsed is not None:
            return parsed
    request = _validate_like_fastapi(body, content_type)
    return encode_records(request.records), request.explain


def _validate_like_fastapi(body: bytes, content_type: str | None) -> PredictRequest:
    """FastAPI's own handling of a JSON body parameter (its parser, its errors), for the
    bodies the fast path does not take: invalid ones, mostly."""
    if not body:
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
        )
    data: Any = body
    if _is_json(content_type):
        try:
            # JSON exchanged between systems is UTF-8 (RFC 8259), whatever json.loads guesses.
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RequestValidationError(
                [
                    {
                        "type": "json_invalid",
                        "loc": ("body", exc.start),
                        "msg": "JSON decode error",
                        "input": {},
                        "ctx": {"error": "the body is not UTF-8 text"},
                    }
                ]
            ) from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RequestValidationError(
                [
                    {
                        "type": "json_invalid",
                        "loc": ("body", exc.pos),
                        "msg": "JSON decode error",
                        "input": {},
                        "ctx": {"error": exc.msg},
                    }
                ],
                body=exc.doc,
            ) from exc
    try:
        return PredictRequest.model_validate(data, from_attributes=True)
    except ValidationError as exc:
        errors = [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        raise RequestValidationError(errors, body=data) from None


def _answer(result: PredictionResult) -> bytes:
    predictions: list[dict[str, Any]] = [
        {"label": "Yes" if p >= THRESHOLD else "No", "probability": p} for p in result.probabilities
    ]
    if result.contributions is not None:
        baseline = result.baseline_log_odds
        for prediction, row in zip(predictions, result.contributions, strict=True):
            prediction["explanation"] = {
                "baseline_log_odds": baseline,
                "contributions": dict(zip(FEATURE_COLUMNS, row, strict=True)),
            }
    return orjson.dumps({"model_version": result.model_version, "predictions": predictions})


_RESPONSES = error_responses(409, 413, 422, 503)
_RESPONSES[503]["headers"] = {
    "Retry-After": {
        "description": "Seconds to wait before retrying; sent when the API sheds load.",
        "schema": {"type": "integer", "minimum": 0},
    }
}


@router.post(
    "/predict",
    response_model=PredictResponse,
    responses=_RESPONSES,
    summary="P(death_yn = Yes) for case records",
    openapi_extra=_OPENAPI_BODY,
)
@checks_read_key
async def predict(request: Request) -> Response:
    """Scored by a prediction worker that holds the production model in memory; 503 when no
    model is promoted yet (train one first), no worker answers in time, or the API already
    holds `PREDICT_MAX_WAITING` predictions waiting (`overloaded`, with `Retry-After`).

    Body: `PredictRequest`, 1 to 10,000 records. With `"explain": true`, each prediction also
    carries its `explanation`: exact Shapley values, in log-odds, of the seven features against
    the training data's distribution (`baseline_log_odds` plus the contributions is the
    prediction's log-odds); 409 `explanation_unavailable` if the production version was saved
    without its training distribution."""
    services = await get_services(request)
    await require_read_key(request, services.settings)
    client = services.prediction_client
    client.refuse_if_full()  # shed before reading the body: a refusal must be cheap
    codes, explain = _codes(await request.body(), _content_type(request.scope))
    result = await (client.predict(codes, explain=True) if explain else client.predict(codes))
    if len(result.probabilities) != len(codes) or (
        explain and len(result.contributions or ()) != len(codes)
    ):
        raise RuntimeError(
            f"the prediction worker returned {len(result.probabilities)} probabilities "
            f"for {len(codes)} records"
        )
    request.app.state.metrics.count_predictions(result.model_version, len(result.probabilities))
    return Response(_answer(result), media_type="application/json")
