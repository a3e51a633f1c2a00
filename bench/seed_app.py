"""The seed's way of serving, kept here only to measure it: every request unpickles the model
from the registry (``joblib.load`` of the artifact) and runs the scikit-learn pipeline on a
one-row DataFrame, as the original prototype did. Never used by the service.

    RVT_SEED_MODEL=models/v1/model.joblib python -m uvicorn bench.seed_app:app --no-access-log
"""

from __future__ import annotations

import os
from typing import Any

import joblib
import pandas as pd
from fastapi import FastAPI

from bench.reference_app import Body
from shared.data.schema import FEATURE_COLUMNS

MODEL_PATH = os.environ.get("RVT_SEED_MODEL", "models/v1/model.joblib")

app = FastAPI(title="seed")


@app.post("/predict")
def predict(body: Body) -> dict[str, Any]:
    model = joblib.load(MODEL_PATH)
    frame = pd.DataFrame([record.model_dump() for record in body.records])[list(FEATURE_COLUMNS)]
    probabilities = model.predict_proba(frame)[:, 1]
    return {
        "model_version": os.path.basename(os.path.dirname(MODEL_PATH)),
        "predictions": [
            {"label": "Yes" if p >= 0.5 else "No", "probability": float(p)} for p in probabilities
        ],
    }
