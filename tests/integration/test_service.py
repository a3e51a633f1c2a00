"""The service as users run it: what eager mode cannot show.

Tests in this module share one stack and run in order: before any model, first training,
second training with a live stream of predictions across the swap, a promotion made straight
on the registry by the CLI, and a cancel.
"""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli.stack import LocalStack
from shared.data.synthetic import write_synthetic_csv
from tests.conftest import SEVERE_CASE
from tests.integration.conftest import train_and_wait, wait_for_job, wait_until

pytestmark = pytest.mark.integration

RECORD = SEVERE_CASE
RVT = str(Path(sys.executable).parent / "rvt")


def predict(http: httpx.Client, records: list[dict[str, str]] | None = None) -> httpx.Response:
    return http.post("/predict", json={"records": records or [RECORD]})


def test_predict_before_any_model_is_503_saying_to_train(client: httpx.Client) -> None:
    response = predict(client)
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "no_production_model"
    assert "train" in error["message"]


def test_train_then_poll_to_succeeded_then_predict(client: httpx.Client) -> None:
    response = client.post("/train", json={})
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued"
    assert response.headers["location"] == body["status_url"] == f"/jobs/{body['job_id']}"
    job = wait_for_job(client, body["job_id"])
    assert job["status"] == "succeeded", job
    assert job["result"]["version"] == "v1" and job["result"]["promoted"]
    assert job["progress"] == 1.0 and job["started_at"] and job["finished_at"]
    assert job["result"]["metrics"]["roc_auc"] > 0.8
    reply = predict(client, [RECORD, {"age_group": "0 - 9 Years"}])
    assert reply.status_code == 200, reply.text
    payload = reply.json()
    assert payload["model_version"] == "v1"
    old, young = payload["predictions"]
    assert old["probability"] > 0.5 > young["probability"]
    assert old["label"] == "Yes" and young["label"] == "No"


class PredictionStream:
    """Single-record predictions in a loop on a thread, recording every answer."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.answers: list[tuple[int, str | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "PredictionStream":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=10) as http:
            while not self._stop.is_set():
                response = predict(http)
                version = (
                    response.json().get("model_version") if response.status_code == 200 else None
                )
                self.answers.append((response.status_code, version))

    def latest_version(self) -> str | None:
        return self.answers[-1][1] if self.answers else None


def test_new_version_takes_over_with_no_failed_request(
    stack: LocalStack, client: httpx.Client
) -> None:
    production = client.get("/models").json()["production"]
    with PredictionStream(stack.base_url) as stream:
        wait_until(lambda: len(stream.answers) > 20, 10, message="predictions to flow")
        job = train_and_wait(client, {"params": {"C": 0.3}})
        assert job["status"] == "succeeded" and job["result"]["promoted"]
        new = job["result"]["version"]
        wait_until(lambda: stream.latest_version() == new, 1.0, message=f"{new} to serve")
        wait_until(lambda: len(stream.answers) > 0, 1)
    statuses = {status for status, _ in stream.answers}
    assert statuses == {200}, stream.answers[-20:]
    versions = [version for _, version in stream.answers]
    switch = versions.index(new)
    assert set(versions[:switch]) == {production}
    assert set(versions[switch:]) == {new}


def test_promotion_on_the_registry_reaches_workers_within_a_second(
    stack: LocalStack, client: httpx.Client
) -> None:
    env = {**os.environ, "MODELS_DIR": str(stack.models_dir)}
    subprocess.run([RVT, "models", "promote", "v1"], env=env, check=True, timeout=60)
    promoted_at = time.monotonic()
    wait_until(lambda: predict(client).json().get("model_version") == "v1", 1.0, 0.02, "v1")
    assert time.monotonic() - promoted_at < 1.0
    assert client.get("/models").json()["production"] == "v1"


def test_cancel_a_running_training(stack: LocalStack, client: httpx.Client) -> None:
    write_synthetic_csv(stack.data_dir / "big.csv", 3_000_000, seed=9)
    versions_before = len(client.get("/models").json()["versions"])
    job_id = client.post("/train", json={"dataset": "big.csv"}).json()["job_id"]

    def running_with_progress() -> dict[str, Any] | None:
        job = client.get(f"/jobs/{job_id}").json()
        return job if job["status"] == "running" and job["rows_read"] > 0 else None

    seen = wait_until(running_with_progress, 30, message="the training to report progress")
    assert seen["stage"] == "reading" and 0 < seen["progress"] < 1
    cancel = client.delete(f"/jobs/{job_id}")
    assert cancel.status_code == 202, cancel.text
    final = wait_until(
        lambda: (j := client.get(f"/jobs/{job_id}").json())["status"] != "running" and j,
        30,
        message="the cancel to take effect",
    )
    assert final["status"] == "cancelled", final
    assert len(client.get("/models").json()["versions"]) == versions_before
    # a second cancel is a conflict: the job already ended
    assert client.delete(f"/jobs/{job_id}").status_code == 409
    staging = stack.models_dir / ".staging"
    assert not staging.exists() or not any(staging.iterdir())


def test_nothing_piles_up_in_redis(stack: LocalStack, client: httpx.Client) -> None:
    """Celery stores no results, and every key the project writes expires."""
    import redis

    for _ in range(50):
        assert predict(client).status_code == 200
    server = redis.Redis.from_url(str(stack.redis_url))
    keys = [key.decode() for key in server.scan_iter(count=1000)]
    assert not [key for key in keys if key.startswith("celery-task-meta")]
    ours = [key for key in keys if key.startswith("rvt:")]
    assert ours, keys
    assert all(server.ttl(key) > 0 for key in ours), {key: server.ttl(key) for key in ours}


def test_training_worker_yields_the_cpu(stack: LocalStack) -> None:
    main = stack.processes["worker-training"].popen.pid
    children = Path(f"/proc/{main}/task/{main}/children").read_text().split()
    assert children, "the prefork pool has a child"
    for child in children:
        assert os.getpriority(os.PRIO_PROCESS, int(child)) >= 10
    serving = stack.processes["worker-prediction"].popen.pid
    assert os.getpriority(os.PRIO_PROCESS, serving) == 0


def test_the_remote_cli_submits_watches_and_predicts(stack: LocalStack) -> None:
    env = {**os.environ, "API_URL": stack.base_url}
    trained = subprocess.run(
        [RVT, "api", "train", "--C", "0.7", "--no-promote"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    assert "queued; POST /train answered in" in trained.stderr
    assert "succeeded" in trained.stdout and "promoted: False" in trained.stdout
    predicted = subprocess.run(
        [RVT, "api", "predict", "--age-group", "80+ Years", "--hosp-yn", "Yes"],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    answer = json.loads(predicted.stdout)
    assert answer["model_version"].startswith("v") and len(answer["predictions"]) == 1
    bad = subprocess.run(
        [RVT, "api", "predict", "--age-group", "80 and over"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert bad.returncode == 2 and "422" in bad.stderr and "age_group" in bad.stderr
