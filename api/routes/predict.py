"""POST /predict: the hot path. Validate, encode, await a prediction worker, answer.

Per-request work is kept small: validation happens in pydantic's core, encoding is seven dict
lookups per record, and the answer is serialised once (not validated again against the model).
"""

from __future__ import annotations

import json

import numpy as np
from fastapi import APIRouter, Response

from api.deps import PredictionClientDep
from api.errors import error_responses
from api.schemas import CaseRecord, PredictRequest, PredictResponse
from shared.schema import FEATURE_COLUMNS, VOCABULARY

router = APIRouter(tags=["predictions"])

#: CDC string -> code, per feature column, in FEATURE_COLUMNS order.
_CODES = tuple({value: code for code, value in enumerate(VOCABULARY[c])} for c in FEATURE_COLUMNS)
assert tuple(CaseRecord.model_fields) == FEATURE_COLUMNS, "CaseRecord must follow FEATURE_COLUMNS"
THRESHOLD = 0.5


def encode_records(records: list[CaseRecord]) -> np.ndarray:
    """Records -> the (n, 7) int8 code array the workers score (no pandas on the hot path)."""
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


@router.post(
    "/predict",
    response_model=PredictResponse,
    responses=error_responses(422, 503),
    summary="P(death_yn = Yes) for case records",
)
async def predict(body: PredictRequest, client: PredictionClientDep) -> Response:
    """Scored by a prediction worker that holds the production model in memory; 503 when no
    model is promoted yet (train one first) or no worker answers in time."""
    result = await client.predict(encode_records(body.records))
    if len(result.probabilities) != len(body.records):
        raise RuntimeError(
            f"the prediction worker returned {len(result.probabilities)} probabilities "
            f"for {len(body.records)} records"
        )
    content = {
        "model_version": result.model_version,
        "predictions": [
            {"label": "Yes" if p >= THRESHOLD else "No", "probability": p}
            for p in result.probabilities
        ],
    }
    return Response(
        json.dumps(content, allow_nan=False, separators=(",", ":")),
        media_type="application/json",
    )
