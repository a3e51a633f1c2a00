"""The app with a prediction stand-in that goes the workers' way: each request becomes its
batch item in the real format (a version, when one is asked for, travels in it), the worker's
own :func:`~shared.model.scoring.score_by_version` scores it with the production model or a
real :class:`~shared.model.scoring.ScorerCache`, and the real client reads the reply."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from api.queue.ports import PredictionResult
from api.queue.predictions import RedisPredictionClient
from shared.errors import NoProductionModelError
from shared.model.scoring import Scorer, ScorerCache, batch_item, encode_codes, score_by_version
from shared.queues import PREDICTION_QUEUE
from shared.registry.versions import ModelRegistry
from tests.api.conftest import Api, MakeApi


class WorkerPathClient:
    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry
        self.cache = ScorerCache(registry.load, registry.storage.version_names, 2)
        self._production: dict[str, Scorer] = {}
        #: The batch items sent, in order.
        self.items: list[list[str]] = []
        #: Raised by refuse_if_full, as the real client does when overloaded.
        self.full: BaseException | None = None

    def refuse_if_full(self) -> None:
        if self.full is not None:
            raise self.full

    def scorer_for(self, version: str | None) -> Scorer:
        current = self.registry.production_version()
        if version is None or version == current:
            if current is None:
                raise NoProductionModelError("no production model yet: train one first")
            if current not in self._production:
                self._production[current] = Scorer(current, self.registry.load(current))
            return self._production[current]
        return self.cache.get(version)

    async def predict(
        self, codes: np.ndarray, explain: bool = False, version: str | None = None
    ) -> PredictionResult:
        self.refuse_if_full()
        item = batch_item(str(len(self.items) + 1), encode_codes(codes), explain, version)
        self.items.append(item)
        (reply,) = score_by_version([item], self.scorer_for)
        return RedisPredictionClient._result(reply)

    async def aclose(self) -> None:
        pass


def v2_error(response: Any, status: int) -> str:
    """The protocol's error shape, with the request id still in the header."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"], body
    assert response.headers["x-request-id"]
    return str(body["error"])


@pytest.fixture
def make_v2_api(make_api: MakeApi) -> MakeApi:
    """``make_api`` with the stand-in, and a live prediction worker announced."""

    def make(models: str = "trained", **overrides: Any) -> Api:
        api = make_api(models, **overrides)
        api.services.prediction_client = WorkerPathClient(api.registry)
        api.services.presence.announce(PREDICTION_QUEUE, "worker-1")
        return api

    return make


@pytest.fixture
def v2_api(make_v2_api: MakeApi) -> Api:
    return make_v2_api()


def stand_in(api: Api) -> WorkerPathClient:
    client = api.services.prediction_client
    assert isinstance(client, WorkerPathClient)
    return client
