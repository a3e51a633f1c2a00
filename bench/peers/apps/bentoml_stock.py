"""BentoML, stock: the pipeline's ``predict_proba`` on a DataFrame of the request's records
(one row for a single-record request), as a BentoML user would write the service. It takes
``/predict``'s body, ``{"records": [...]}``.

    RVT_PEER_MODELS=... RVT_PEER_VERSION=v1 bentoml serve bench.peers.apps.bentoml_stock:Stock
"""

from __future__ import annotations

from typing import Any

import bentoml
import pandas as pd

from bench.peers.apps.common import load_pipeline
from shared.data.schema import FEATURE_COLUMNS, MISSING


@bentoml.service(logging={"access": {"enabled": False}})
class Stock:
    def __init__(self) -> None:
        self.pipeline = load_pipeline()

    @bentoml.api
    def predict(self, records: list[dict[str, str]]) -> dict[str, Any]:
        frame = pd.DataFrame.from_records(records, columns=list(FEATURE_COLUMNS)).fillna(MISSING)
        probabilities = self.pipeline.predict_proba(frame)[:, 1]
        return {"predictions": [{"probability": float(p)} for p in probabilities]}
