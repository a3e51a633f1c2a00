"""The bare reference app: what FastAPI alone costs for a /predict-shaped request.

One POST endpoint that validates a body exactly as ``POST /predict`` does (the same CDC
vocabularies, unknown fields refused, ``age_group`` required) and answers a constant. The bench
runs it as one uvicorn process with ``--loop asyncio --http h11``, so it measures the same
whatever optional speed-ups (uvloop, httptools) a machine has:

    python -m uvicorn bench.reference_app:app --loop asyncio --http h11 --no-access-log

It imports only the schema's vocabularies, so its heap is as small as a bare app's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

from shared.data.schema import MISSING, VOCABULARY

if TYPE_CHECKING:
    Status = Sex = Age = Race = YesNo = str
else:
    Status = Literal[VOCABULARY["current_status"]]
    Sex = Literal[VOCABULARY["sex"]]
    Age = Literal[VOCABULARY["age_group"]]
    Race = Literal[VOCABULARY["race_ethnicity_combined"]]
    YesNo = Literal[VOCABULARY["hosp_yn"]]


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")

    current_status: Status = MISSING
    sex: Sex = MISSING
    age_group: Age
    race_ethnicity_combined: Race = MISSING
    hosp_yn: YesNo = MISSING
    icu_yn: YesNo = MISSING
    medcond_yn: YesNo = MISSING


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    records: list[Record] = Field(min_length=1, max_length=10_000)


ANSWER = {"model_version": "reference", "predictions": [{"label": "No", "probability": 0.5}]}

app = FastAPI(title="reference")


@app.post("/predict")
async def predict(body: Body) -> dict[str, Any]:
    return ANSWER
