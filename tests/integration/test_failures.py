"""Losing parts of the stack: a killed training worker, a stopped prediction worker, Redis down.

Each test has a stack of its own, since it breaks it.
"""

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from cli.stack import LocalStack, redis_command, wait_for_redis
from shared.data.synthetic import write_synthetic_csv
from tests.integration.conftest import make_stack, train_and_wait, wait_for_job, wait_until
from tests.integration.test_service import RECORD

pytestmark = pytest.mark.integration


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_sigkilled_training_worker_ends_the_job_failed_not_running(own_stack: LocalStack) -> None:
    write_synthetic_csv(own_stack.data_dir / "big.csv", 3_000_000, seed=4)
    with httpx.Client(base_url=own_stack.base_url, timeout=10) as http:
        job_id = http.post("/train", json={"dataset": "big.csv"}).json()["job_id"]
        wait_until(
            lambda: http.get(f"/jobs/{job_id}").json()["rows_read"] > 0,
            30,
            message="the training to be running",
        )
        worker = own_stack.processes["worker-training"]
        killed_at = time.monotonic()
        os.kill(worker.popen.pid, signal.SIGKILL)  # the main process, not its pool child
        worker.popen.wait(5)  # reap it, so that only live processes remain in its group
        job = wait_for_job(http, job_id, timeout=20)
        lost_after = time.monotonic() - killed_at
        assert job["status"] == "failed", job
        assert job["error"]["code"] == "worker_lost"
        # lease 2 s: seen as lost in seconds, not after the broker's one-hour redelivery
        assert lost_after < 20
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
        started = time.monotonic()

        def refused() -> httpx.Response | None:
            response = http.post("/predict", json={"records": [RECORD]})
            return response if response.status_code == 503 else None

        response = wait_until(refused, 10, message="predict to refuse")
        assert time.monotonic() - started < 10
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


def test_a_training_over_its_time_limit_ends_failed(tmp_path: Path) -> None:
    stack = make_stack(tmp_path, env={"TRAINING_TIME_LIMIT_SECONDS": "1"})
    try:
        write_synthetic_csv(stack.data_dir / "big.csv", 3_000_000, seed=5)
        with httpx.Client(base_url=stack.base_url, timeout=10) as http:
            job = train_and_wait(http, {"dataset": "big.csv"}, timeout=60)
            assert job["status"] == "failed", job
            assert job["error"]["code"] == "time_limit"
            assert http.get("/models").json()["versions"] == []
            # the worker survived its time limit and takes the next job
            assert train_and_wait(http, {})["status"] == "succeeded"
    finally:
        stack.stop()
