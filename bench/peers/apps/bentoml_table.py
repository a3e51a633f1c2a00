"""BentoML with the project's table scorer: the same body as ``/predict`` and the stock
service, scored by one lookup per record (``shared.model.scoring.Scorer``). The method is
``async`` since the lookup takes microseconds: no thread hand-off per request.

    RVT_PEER_MODELS=... RVT_PEER_VERSION=v1 bentoml serve bench.peers.apps.bentoml_table:Table
"""

from __future__ import annotations

from typing import Any

import bentoml

from bench.peers.apps.common import encode_records, load_scorer


@bentoml.service(logging={"access": {"enabled": False}})
class Table:
    def __init__(self) -> None:
        self.scorer = load_scorer()

    @bentoml.api
    async def predict(self, records: list[dict[str, str]]) -> dict[str, Any]:
        try:
            codes = encode_records(records)
        except ValueError as exc:
            raise bentoml.exceptions.InvalidArgument(str(exc)) from exc
        probabilities = self.scorer.predict_proba(codes).tolist()
        return {"predictions": [{"probability": p} for p in probabilities]}
