"""MLServer custom runtime: the project's table scorer behind MLServer's V2 protocol.

The request is the one the stock sklearn runtime gets (one BYTES input per feature column);
the answer is one FP64 output, ``probability``. Configured by the bench in model-settings.json
as ``"implementation": "bench.peers.apps.mlserver_table.TableRuntime"``.
"""

from __future__ import annotations

from mlserver import MLModel
from mlserver.codecs import NumpyCodec, StringCodec
from mlserver.errors import MLServerError
from mlserver.types import InferenceRequest, InferenceResponse

from bench.peers.apps.common import encode_columns, load_scorer


class TableRuntime(MLModel):
    async def load(self) -> bool:
        self._scorer = load_scorer()
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        try:
            codes = encode_columns(
                {inp.name: StringCodec.decode_input(inp) for inp in payload.inputs}
            )
        except ValueError as exc:
            raise MLServerError(str(exc), status_code=400) from exc
        probability = self._scorer.predict_proba(codes)
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            outputs=[NumpyCodec.encode_output("probability", probability)],
        )
