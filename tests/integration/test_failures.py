"""Losing parts of the stack: a killed training worker, a stopped prediction worker, Redis down.

Each test has a stack of its own, since it breaks it.
"""

import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cli.stack import LocalStack, redis_command, wait_for_redis
from tests.conftest import MakeDataset
from tests.integration.conftest import (
    SLOW_DATASET,
    SLOW_ENV,
    add_slow_dataset,
    make_stack,
    train_and_wait,
    wait_for_job,
    wait_for_stage,
    wait_until,
)
from tests.integration.test_service import RECORD

pytestmark = pytest.mark.integration


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def short_lease_stack(tmp_path: Path, make_dataset: MakeDataset) -> Iterator[LocalStack]:
    """A stack of its own whose jobs' lease is 2 s: a lost worker is seen within seconds."""
    running = make_stack(tmp_path, {**SLOW_ENV, "JOB_LEASE_SECONDS": "2"})
    try:
        add_slow_dataset(running, make_dataset)
        yield running
    finally:
        running.stop()


def test_sigkilled_training_worker_ends_the_job_failed_not_running(
    short_lease_stack: LocalStack,
) -> None:
    own_stack = short_lease_stack
    with httpx.Client(base_url=own_stack.base_url, timeout=10) as http:
        job_id = http.post("/train", json={"dataset": SLOW_DATASET}).json()["job_id"]
        wait_for_stage(http, job_id, "reading")  # the slow dataset keeps it there for 10 s+
        worker = own_stack.processes["worker-training"]
        os.kill(worker.popen.pid, signal.SIGKILL)  # the main process, not its pool child
        worker.popen.wait(5)  # reap it, so that only live processes remain in its group
        # lease 2 s: seen as lost in seconds, not after the broker's one-hour redelivery
        job = wait_for_job(http, job_id, timeout=20)
        assert job["status"] == "failed", job
        assert job["error"]["code"] == "worker_lost"
        # the pool child did not go on as an orphan, and nothing half-written was published
        wait_until(lambda: not _group_alive(worker.popen.pid), 10, message="the pool child to exit")
        assert http.get("/models").json()["versions"] == []
        # readiness now names the missing training worker
        ready = wait_until(
            lambda: (r := http.get("/readyz")).status_code == 503 and r.json(),
            10,
            message="readyz to report the lost worker",
        )
        assert ready["checks"]["training_workers"]["ok"] is False
        assert ready["checks"]["prediction_workers"]["ok"] is True


def test_no_prediction_worker_is_a_quick_clear_503(own_stack: LocalStack) -> None:
    with httpx.Client(base_url=own_stack.base_url, timeout=10) as http:
        assert train_and_wait(http)["status"] == "succeeded"
        assert http.post("/predict", json={"records": [RECORD]}).status_code == 200
        own_stack.processes["worker-prediction"].stop()

        def refused() -> tuple[httpx.Response, float] | None:
            started = time.monotonic()
            response = http.post("/predict", json={"records": [RECORD]})
            took = time.monotonic() - started
            return (response, took) if response.status_code == 503 else None

        response, took = wait_until(refused, 20, message="predict to refuse")
        # bounded by PREDICT_TIMEOUT_SECONDS (3 s), never a hang: the margin is for slow machines
        assert took < 3 + 5, took
        assert "prediction worker" in response.json()["error"]["message"]
        readiness = http.get("/readyz")
        assert readiness.status_code == 503
        assert readiness.json()["checks"]["prediction_workers"]["ok"] is False


def test_redis_down_then_back_without_restarting_the_api(
    own_stack: LocalStack, tmp_path: Path
) -> None:
    with httpx.Client(base_url=own_stack.base_url, timeout=10) as http:
        assert train_and_wait(http)["status"] == "succeeded"
        api_pid = own_stack.processes["api"].popen.pid
        redis = own_stack.processes.pop("redis")
        port = int(str(own_stack.redis_url).rsplit(":", 1)[1].split("/")[0])
        redis.stop()

        for path in ("/readyz", "/predict"):
            started = time.monotonic()
            if path == "/predict":
                response = http.post(path, json={"records": [RECORD]})
            else:
                response = http.get(path)
            took = time.monotonic() - started
            assert response.status_code == 503, (path, response.text)
            assert took < 5, (path, took)  # a quick answer, never a hang
        assert http.post("/train", json={}).status_code == 503

        workdir = tmp_path / "redis-again"
        workdir.mkdir()
        own_stack.launch("redis", redis_command(port, workdir))
        wait_for_redis(port, timeout=10)
        wait_until(lambda: http.get("/readyz").status_code == 200, 60, 0.2, "readyz to recover")
        wait_until(
            lambda: http.post("/predict", json={"records": [RECORD]}).status_code == 200,
            30,
            0.2,
            "predictions to recover",
        )
        assert own_stack.processes["api"].popen.pid == api_pid
        assert own_stack.processes["api"].alive()


def test_a_training_over_its_time_limit_ends_failed(
    tmp_path: Path, make_dataset: MakeDataset
) -> None:
    """The slow dataset reads for 10 s or more (its pauses alone): always past a 5 s limit,
    however fast the machine. The next training is one chunk (one 0.5 s pause), well within
    it even on a loaded machine (the 200k-row default would be ten chunks: ten pauses)."""
    stack = make_stack(tmp_path, env={**SLOW_ENV, "TRAINING_TIME_LIMIT_SECONDS": "5"})
    try:
        slow = add_slow_dataset(stack, make_dataset)
        with httpx.Client(base_url=stack.base_url, timeout=10) as http:
            job = train_and_wait(http, {"dataset": slow}, timeout=60)
            assert job["status"] == "failed", job
            assert job["error"]["code"] == "time_limit"
            assert http.get("/models").json()["versions"] == []
            # the worker survived its time limit and takes the next job
            small = stack.data_dir / "small.csv"
            shutil.copyfile(make_dataset(5_000, 3), small)
            assert train_and_wait(http, {"dataset": small.name})["status"] == "succeeded"
    finally:
        stack.stop()
