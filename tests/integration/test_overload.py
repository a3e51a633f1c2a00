"""Overload is shed, not queued without end, on a real stack (README, "What the service promises
under faults").

The prediction worker is stopped (SIGSTOP), so nothing is answered, and 40 clients post at once
to an API that lets 8 predictions wait: the 32 it cannot hold are refused with ``503`` and
``Retry-After`` while the worker is still stopped (so they waited for no worker), the 8 it
admitted are answered ``200`` once the worker runs again, and no request times out.

Nothing here is timed: "at once" is shown by the refusals arriving before any answer could.
The throughput and latency under 256 connections are a benchmark (``python -m bench.overload``).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import SEVERE_CASE
from tests.integration.conftest import make_stack, train_and_wait, wait_until

pytestmark = pytest.mark.integration

PATIENCE = 60.0
MAX_WAITING = 8
CLIENTS = 40
BODY = {"records": [SEVERE_CASE]}


def test_past_the_bound_predictions_are_refused_at_once_and_the_admitted_are_served(
    tmp_path: Path,
) -> None:
    stack = make_stack(
        tmp_path,
        # a long timeout: the admitted requests wait out the stopped worker instead of timing out
        {"PREDICT_MAX_WAITING": str(MAX_WAITING), "PREDICT_TIMEOUT_SECONDS": "60"},
    )
    worker = stack.processes["worker-prediction"].popen
    stopped = False
    try:
        with httpx.Client(base_url=stack.base_url, timeout=PATIENCE) as http:
            assert train_and_wait(http, {}, timeout=PATIENCE)["status"] == "succeeded"
            wait_until(
                lambda: http.post("/predict", json=BODY).status_code == 200,
                PATIENCE,
                0.1,
                "the model to serve",
            )
        os.kill(worker.pid, signal.SIGSTOP)
        stopped = True
        answered = threading.Semaphore(0)

        def post() -> httpx.Response:
            try:
                with httpx.Client(base_url=stack.base_url, timeout=PATIENCE * 2) as http:
                    return http.post("/predict", json=BODY)
            finally:
                answered.release()

        with ThreadPoolExecutor(CLIENTS) as pool:
            futures: list[Future[httpx.Response]] = [pool.submit(post) for _ in range(CLIENTS)]
            deadline = time.monotonic() + PATIENCE
            for _ in range(CLIENTS - MAX_WAITING):
                assert answered.acquire(timeout=max(0.0, deadline - time.monotonic())), (
                    "the requests past the bound were not refused while the worker was stopped"
                )
            refused = [f.result() for f in futures if f.done()]
            waiting = [f for f in futures if not f.done()]
            os.kill(worker.pid, signal.SIGCONT)
            stopped = False
            served = [f.result() for f in waiting]  # each bounded by the client's timeout
        with httpx.Client(base_url=stack.base_url, timeout=PATIENCE) as http:
            after = http.post("/predict", json=BODY)
    finally:
        if stopped:
            os.kill(worker.pid, signal.SIGCONT)
        stack.stop()

    print(
        f"\nPREDICT_MAX_WAITING={MAX_WAITING}, {CLIENTS} clients at once, worker stopped: "
        f"{len(refused)} refused with 503 before any answer, {len(served)} admitted and "
        f"served after SIGCONT ({sum(r.status_code == 200 for r in served)} x 200), "
        "0 client timeouts"
    )
    assert len(refused) == CLIENTS - MAX_WAITING
    assert len(waiting) == MAX_WAITING  # the bound admitted exactly its number
    for response in refused:
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "overloaded"
        assert response.headers["retry-after"] in {"1", "2"}
    assert [r.status_code for r in served] == [200] * MAX_WAITING
    assert after.status_code == 200  # room again once the waiting were answered
