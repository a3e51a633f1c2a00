"""The commands of docker-compose.yml are the ones that work: each app service's command and
environment, run here as a local process (the container's ``uvicorn``/``celery`` become the
venv's, Redis is a private ``redis-server`` on a free port, the volumes are temporary folders,
the API listens on a free loopback port), make a stack that answers ``GET /readyz`` with 200;
their healthchecks pass; a training and predictions show in ``/metrics``, which promtool
accepts; and every process logs JSON lines that carry job and request ids.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cli.stack import LocalStack, free_port
from shared.data.synthetic import write_synthetic_csv
from shared.queues import TRAIN_TASK, TRAINING_QUEUE
from shared.settings import Settings
from tests.deploy.conftest import APP_SERVICES, BIN, check_metrics, interpolate, load_compose
from tests.integration.conftest import require_redis_server, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.deploy, pytest.mark.external]

#: Fast presence announcements so readiness shows within a second; small default dataset.
FAST_ENV = {
    "WORKER_ANNOUNCE_SECONDS": "0.5",
    "WORKER_PRESENCE_TTL_SECONDS": "3",
    "DEFAULT_DATASET_ROWS": "20000",
}
RECORD = {"age_group": "80+ Years", "hosp_yn": "Yes", "medcond_yn": "Yes"}


def local_command(command: list[str], port: int) -> list[str]:
    """The container's command for this machine: the venv's executables, loopback only, and
    the free port instead of 8000. Everything else is kept as compose has it."""
    local = [str(BIN / command[0]), *command[1:]]
    for i, arg in enumerate(local[:-1]):
        if arg == "--port":
            local[i + 1] = str(port)
        elif arg == "--host":
            local[i + 1] = "127.0.0.1"
    return local


def local_env(service: dict[str, Any], stack: LocalStack) -> dict[str, str]:
    """The service's environment as compose resolves it (no shell variables set), pointed at
    this machine's private Redis and temporary folders."""
    env = {key: interpolate(str(value)) for key, value in service.get("environment", {}).items()}
    env.update(
        REDIS_URL=str(stack.redis_url),
        MODELS_DIR=str(stack.models_dir),
        DATA_DIR=str(stack.data_dir),
        PORT=str(stack.port),
    )
    return env


@dataclass
class ComposeStack:
    stack: LocalStack
    compose: dict[str, Any]
    metrics_before_workers: str


def _queue_a_message(redis_url: str) -> None:
    """A training message for no job, sent the way the API sends them, before any worker
    runs: the queue depth must count it (and the training worker, later, ignores it)."""
    from worker.celery_app import create_celery

    celery = create_celery(Settings(redis_url=redis_url))
    try:
        celery.send_task(TRAIN_TASK, args=[uuid.uuid4().hex], queue=TRAINING_QUEUE, retry=False)
    finally:
        celery.close()


@pytest.fixture(scope="module")
def compose_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeStack]:
    require_redis_server()
    tmp = tmp_path_factory.mktemp("compose")
    (tmp / "data").mkdir()
    write_synthetic_csv(tmp / "data" / "synthetic_default.csv", 20_000, seed=5)
    compose = load_compose()
    stack = LocalStack(
        models_dir=tmp / "models", data_dir=tmp / "data", log_dir=tmp / "logs", env=FAST_ENV
    )
    stack.port = free_port()
    try:
        stack.start_redis()
        _queue_a_message(str(stack.redis_url))
        api = compose["services"]["api"]
        stack.launch("api", local_command(api["command"], stack.port), local_env(api, stack))
        metrics_url = f"{stack.base_url}/metrics"

        def scrape() -> str | None:
            try:
                return httpx.get(metrics_url, timeout=2).text
            except httpx.HTTPError:
                return None

        before = wait_until(scrape, 30, interval=0.1, message="the API to answer /metrics")
        for name in ("worker-training", "worker-prediction"):
            service = compose["services"][name]
            stack.launch(
                name, local_command(service["command"], stack.port), local_env(service, stack)
            )
        stack.wait_ready(60)
    except Exception as exc:  # StackError, or a process that never answered
        logs = "\n".join(f"--- {p.name}\n{p.log_tail()}" for p in stack.processes.values())
        stack.stop()
        pytest.fail(f"the compose commands did not make a ready stack: {exc}\n{logs}")
    yield ComposeStack(stack, compose, before)
    stack.stop()


@pytest.fixture(scope="module")
def http(compose_stack: ComposeStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=compose_stack.stack.base_url, timeout=10) as client:
        yield client


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    """Every sample of a scrape, parsed by prometheus_client's own parser."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(scrape: Samples, name: str, **labels: str) -> float | None:
    return scrape.get((name, frozenset(labels.items())))


def test_the_compose_commands_make_a_ready_stack(
    http: httpx.Client, compose_stack: ComposeStack
) -> None:
    response = http.get("/readyz")
    assert response.status_code == 200, response.text
    checks = response.json()["checks"]
    host = socket.gethostname()  # `-n training@%h`, as compose names them
    assert checks["training_workers"]["workers"] == [f"training@{host}"]
    assert checks["prediction_workers"]["workers"] == [f"prediction@{host}"]
    assert all(process.alive() for process in compose_stack.stack.processes.values())


def _run_healthcheck(
    test: list[str], stack: LocalStack, service: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    assert test[0] == "CMD" and test[1] == "python"
    return subprocess.run(
        [sys.executable, *test[2:]],
        cwd=stack.cwd,
        env={**stack.process_env(), **local_env(service, stack)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_every_compose_healthcheck_passes_against_the_running_services(
    compose_stack: ComposeStack,
) -> None:
    stack, services = compose_stack.stack, compose_stack.compose["services"]
    for name in APP_SERVICES:
        result = _run_healthcheck(services[name]["healthcheck"]["test"], stack, services[name])
        assert result.returncode == 0, f"{name}: {result.stderr}"


def test_a_worker_healthcheck_fails_for_a_worker_that_is_not_there(
    compose_stack: ComposeStack,
) -> None:
    stack, service = compose_stack.stack, compose_stack.compose["services"]["worker-training"]
    test = [*service["healthcheck"]["test"][:-1], "nobody@%h"]
    result = _run_healthcheck(test, stack, service)
    assert result.returncode == 1
    assert "no fresh announcement from nobody@" in result.stderr


def test_queue_depth_counted_the_waiting_message_and_then_its_consumption(
    compose_stack: ComposeStack, http: httpx.Client
) -> None:
    before = samples(compose_stack.metrics_before_workers)
    assert value(before, "rvt_queue_depth", queue="training") == 1
    assert value(before, "rvt_queue_depth", queue="prediction") == 0
    assert value(before, "rvt_workers_alive", queue="training") == 0
    wait_until(
        lambda: value(samples(http.get("/metrics").text), "rvt_queue_depth", queue="training") == 0,
        30,
        interval=0.1,
        message="the training worker to take the waiting message",
    )


def test_a_training_and_predictions_show_in_metrics_that_promtool_accepts(
    http: httpx.Client, tmp_path: Path
) -> None:
    """Counted from a scrape taken first: the other tests of the module may train too."""
    before = samples(http.get("/metrics").text)

    def grew(scrape: Samples, name: str, **labels: str) -> float:
        return (value(scrape, name, **labels) or 0) - (value(before, name, **labels) or 0)

    submitted = http.post("/train", json={}, headers={"X-Request-ID": "compose-train-1"})
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["job_id"]
    job = wait_until(
        lambda: (
            (j := http.get(f"/jobs/{job_id}").json())["status"] in ("succeeded", "failed") and j
        ),
        60,
        interval=0.1,
        message="the training to finish",
    )
    assert job["status"] == "succeeded", job
    for size in (1, 2, 3):
        response = http.post("/predict", json={"records": [RECORD] * size})
        assert response.status_code == 200, response.text
    text = http.get("/metrics").text
    scrape = samples(text)
    version = job["result"]["version"]
    assert value(scrape, "rvt_redis_up") == 1
    assert grew(scrape, "rvt_jobs_finished_total", kind="training", status="succeeded") == 1
    assert grew(scrape, "rvt_training_duration_seconds_count", status="succeeded") == 1
    assert grew(scrape, "rvt_predictions_total", model_version=version) == 6
    assert (
        grew(scrape, "rvt_http_requests_total", method="POST", route="/predict", status="200") == 3
    )
    assert value(
        scrape, "rvt_http_requests_total", method="GET", route="/jobs/{job_id}", status="200"
    )
    assert value(scrape, "rvt_workers_alive", queue="prediction") == 1

    checked = check_metrics(text)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def _json_lines(path: Path) -> list[dict[str, Any]]:
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"{path.name}: a log line that is not JSON: {line!r}")
    return parsed


def test_every_process_logs_json_lines_with_job_and_request_ids(
    compose_stack: ComposeStack, http: httpx.Client
) -> None:
    submitted = http.post(
        "/train", json={"promote": False}, headers={"X-Request-ID": "compose-logs-1"}
    )
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["job_id"]
    wait_until(
        lambda: http.get(f"/jobs/{job_id}").json()["status"] == "succeeded",
        60,
        interval=0.1,
        message="the training to succeed",
    )
    logs = {name: compose_stack.stack.processes[name].log_path for name in APP_SERVICES}
    assert all(path is not None for path in logs.values())
    api = _json_lines(logs["api"])  # type: ignore[arg-type]
    queued = [line for line in api if line.get("message") == "training job queued"]
    assert any(
        line.get("job_id") == job_id and line.get("request_id") == "compose-logs-1"
        for line in queued
    )
    assert not any("color_message" in line for line in api)

    training = _json_lines(logs["worker-training"])  # type: ignore[arg-type]
    about_the_job = [
        line for line in training if job_id in line["message"] or line.get("job_id") == job_id
    ]
    assert len(about_the_job) >= 3  # received, succeeded, and the training's own lines
    assert all(line.get("job_id") == job_id for line in about_the_job), about_the_job
    assert {"ts", "level", "logger", "message"} <= set(about_the_job[0])
    _json_lines(logs["worker-prediction"])  # type: ignore[arg-type]
