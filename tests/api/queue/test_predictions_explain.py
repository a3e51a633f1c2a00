"""The prediction client carries "explain" as a flag on its request's item: explained and plain
requests share batches, each gets what it asked for, and a worker's refusal to explain reaches
only the request that asked."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from shared.errors import ExplanationUnavailableError
from shared.model.scoring import EXPLAIN
from tests.api.queue.support import RedisServer, SumScorer, scored
from tests.api.queue.test_predictions import StartWorker, client_for, random_codes, run


def test_explained_and_plain_requests_share_batches_and_get_what_they_asked(
    redis_server: RedisServer, stand_in_workers: StartWorker
) -> None:
    worker = stand_in_workers(redis_server.url())
    client = client_for(redis_server.url())
    rng = np.random.default_rng(2)
    inputs = [(random_codes(rng, int(rng.integers(1, 4))), i % 3 == 0) for i in range(120)]

    async def scenario() -> list[Any]:
        try:
            return await asyncio.gather(*(client.predict(c, explain=e) for c, e in inputs))
        finally:
            await client.aclose()

    results = run(scenario())
    for (codes, explain), result in zip(inputs, results, strict=True):
        assert result.probabilities == pytest.approx(SumScorer().predict_proba(codes).tolist())
        if explain:
            assert result.baseline_log_odds == 0.0
            np.testing.assert_array_equal(result.contributions, codes / 100.0)
        else:
            assert result.baseline_log_odds is None and result.contributions is None
    items = [item for task in worker.tasks for item in task["batch"]]
    assert sorted(len(item) for item in items) == sorted(3 if e else 2 for _, e in inputs)
    assert all(item[2] == EXPLAIN for item in items if len(item) == 3)
    mixed = [task for task in worker.tasks if len({len(item) for item in task["batch"]}) == 2]
    assert mixed, "no batch held both kinds of request"


def test_a_refusal_to_explain_reaches_only_the_request_that_asked(
    redis_server: RedisServer, stand_in_workers: StartWorker
) -> None:
    def refuse_to_explain(batch: list[list[str]]) -> list[dict[str, Any]]:
        error = {"code": "explanation_unavailable", "message": "model version v7 cannot explain"}
        plain = scored([item[:2] for item in batch])
        return [
            {"id": item[0], "error": error} if len(item) > 2 else reply
            for item, reply in zip(batch, plain, strict=True)
        ]

    stand_in_workers(redis_server.url(), respond=refuse_to_explain)
    client = client_for(redis_server.url())
    codes = random_codes(np.random.default_rng(3), 2)

    async def scenario() -> list[Any]:
        try:
            return await asyncio.gather(
                client.predict(codes), client.predict(codes, explain=True), return_exceptions=True
            )
        finally:
            await client.aclose()

    plain, explained = run(scenario())
    assert plain.probabilities == pytest.approx(SumScorer().predict_proba(codes).tolist())
    assert isinstance(explained, ExplanationUnavailableError)
    assert explained.status_code == 409 and "v7" in explained.message
