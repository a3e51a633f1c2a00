"""Real processes: a private redis-server on a free port, real Celery workers, the real API.

Never the machine's shared Redis. When ``CI=true`` these tests fail, rather than skip, if
Redis cannot start.
"""

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli.stack import LocalStack, StackError
from shared.data.synthetic import write_synthetic_csv

pytestmark = pytest.mark.integration

#: Short leases and presence announcements so that a lost worker shows within seconds in tests.
FAST_ENV = {
    "JOB_LEASE_SECONDS": "2",
    "WORKER_ANNOUNCE_SECONDS": "0.5",
    "WORKER_PRESENCE_TTL_SECONDS": "3",
    "DEFAULT_DATASET_ROWS": "20000",
    "PREDICT_TIMEOUT_SECONDS": "3",
    "LOG_LEVEL": "INFO",
}


def require_redis_server() -> None:
    if shutil.which("redis-server") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is not installed, and CI=true: .ci/run must install it")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")


def wait_until(
    check: Callable[[], Any], timeout: float, interval: float = 0.05, message: str = ""
) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout} s waiting for {message or check}: last {last!r}")


def make_stack(tmp: Path, env: dict[str, str] | None = None) -> LocalStack:
    require_redis_server()
    data_dir = tmp / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    write_synthetic_csv(data_dir / "synthetic_default.csv", 20_000, seed=3)
    stack = LocalStack(
        models_dir=tmp / "models",
        data_dir=data_dir,
        log_dir=tmp / "logs",
        env={**FAST_ENV, **(env or {})},
    )
    try:
        stack.start(timeout=90)
    except StackError as exc:
        stack.stop()
        logs = "\n".join(f"--- {p.name}\n{p.log_tail()}" for p in stack.processes.values())
        pytest.fail(f"the stack did not start: {exc}\n{logs}")
    return stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """One stack shared by the tests of a module that leave it as they found it."""
    running = make_stack(tmp_path_factory.mktemp("stack"))
    yield running
    running.stop()


@pytest.fixture
def own_stack(tmp_path: Path) -> Iterator[LocalStack]:
    """A stack of the test's own, for tests that kill or stop parts of it."""
    running = make_stack(tmp_path)
    yield running
    running.stop()


@pytest.fixture
def client(stack: LocalStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.base_url, timeout=10) as http:
        yield http


def train_and_wait(
    http: httpx.Client, body: dict[str, Any] | None = None, timeout: float = 60
) -> dict[str, Any]:
    response = http.post("/train", json=body or {})
    assert response.status_code == 202, response.text
    return wait_for_job(http, response.json()["job_id"], timeout)


def wait_for_job(http: httpx.Client, job_id: str, timeout: float = 60) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        job = http.get(f"/jobs/{job_id}").json()
        return job if job["status"] in {"succeeded", "failed", "cancelled"} else None

    return wait_until(finished, timeout, interval=0.1, message=f"job {job_id} to finish")
