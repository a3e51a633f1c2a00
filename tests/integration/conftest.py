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
from tests.conftest import MakeDataset, refuse_without_services

pytestmark = pytest.mark.integration

#: Presence announcements so that a lost worker shows within seconds in tests. The job lease is
#: 10 s, not the 15 s default, nor so short that a training child starved of CPU (it runs at
#: a low priority) looks lost: the test that kills a worker shortens it on its own stack.
FAST_ENV = {
    "JOB_LEASE_SECONDS": "10",
    "WORKER_ANNOUNCE_SECONDS": "0.5",
    "WORKER_PRESENCE_TTL_SECONDS": "3",
    "DEFAULT_DATASET_ROWS": "20000",
    "PREDICT_TIMEOUT_SECONDS": "3",
    "LOG_LEVEL": "INFO",
}


def require_redis_server() -> None:
    refuse_without_services("redis-server", "integration")
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


#: The lever for trainings that must last (``TEST_TRAINING_DELAY_SECONDS``): a pause after each
#: chunk of ``CHUNK_ROWS`` rows. The default dataset (20,000 rows, one chunk) trains with one
#: pause; :data:`SLOW_DATASET` reads for at least 20 chunks x 0.5 s, so a test can watch,
#: cancel, time out or kill it on a machine of any speed. A test that stops it early waits for
#: none of that.
SLOW_ENV = {"CHUNK_ROWS": "20000", "TEST_TRAINING_DELAY_SECONDS": "0.5"}
SLOW_DATASET = "slow.csv"
SLOW_ROWS = 400_000


def add_slow_dataset(stack: LocalStack, make_dataset: MakeDataset) -> str:
    """Put :data:`SLOW_DATASET` in the stack's data folder (a hard link to the session's copy,
    written once) and return its name."""
    source = make_dataset(SLOW_ROWS, 9)
    target = stack.data_dir / SLOW_DATASET
    if not target.exists():
        try:
            os.link(source, target)
        except OSError:  # another file system
            shutil.copyfile(source, target)
    return SLOW_DATASET


def new_stack(tmp: Path, env: dict[str, str] | None = None) -> LocalStack:
    """A stack in ``tmp``, not started yet, with a small default dataset already made."""
    require_redis_server()
    data_dir = tmp / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    write_synthetic_csv(data_dir / "synthetic_default.csv", 20_000, seed=3)
    return LocalStack(
        models_dir=tmp / "models",
        data_dir=data_dir,
        log_dir=tmp / "logs",
        env={**FAST_ENV, **(env or {})},
    )


def start_or_fail(stack: LocalStack) -> LocalStack:
    """Start ``stack``; if it cannot start, stop it and fail with its processes' logs."""
    try:
        stack.start(timeout=90)
    except StackError as exc:
        logs = "\n".join(f"--- {p.name}\n{p.log_tail()}" for p in stack.processes.values())
        stack.stop()
        pytest.fail(f"the stack did not start: {exc}\n{logs}")
    return stack


def make_stack(tmp: Path, env: dict[str, str] | None = None) -> LocalStack:
    return start_or_fail(new_stack(tmp, env))


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, make_dataset: MakeDataset
) -> Iterator[LocalStack]:
    """One stack shared by the tests of a module. Tests assume nothing about what the others
    did to it: each sets up what it needs (see :func:`production`) and checks what it changed."""
    running = make_stack(tmp_path_factory.mktemp("stack"), SLOW_ENV)
    try:
        add_slow_dataset(running, make_dataset)
        yield running
    finally:
        running.stop()


@pytest.fixture
def own_stack(tmp_path: Path, make_dataset: MakeDataset) -> Iterator[LocalStack]:
    """A stack of the test's own, for tests that kill or stop parts of it."""
    running = make_stack(tmp_path, SLOW_ENV)
    try:
        add_slow_dataset(running, make_dataset)
        yield running
    finally:
        running.stop()


@pytest.fixture
def client(stack: LocalStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.base_url, timeout=10) as http:
        yield http


@pytest.fixture
def production(client: httpx.Client) -> str:
    """The version in production: a first training makes one if the stack has none yet."""
    current = client.get("/models").json()["production"]
    if current is None:
        job = train_and_wait(client)
        assert job["status"] == "succeeded" and job["result"]["promoted"], job
        current = job["result"]["version"]
    return str(current)


def passing_versions(http: httpx.Client, count: int) -> list[str]:
    """At least ``count`` versions that passed their gate (trained here if missing), newest
    first."""

    def passing() -> list[str]:
        listed = http.get("/models").json()["versions"]
        return [v["version"] for v in listed if v["gate"]["passed"]]

    for _ in range(count):  # bounded: each training on the default dataset passes its gate
        if len(passing()) >= count:
            break
        job = train_and_wait(http, {"promote": False})
        assert job["status"] == "succeeded" and job["result"]["gate"]["passed"], job
    versions = passing()
    assert len(versions) >= count, versions
    return versions


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


def wait_for_stage(
    http: httpx.Client, job_id: str, stage: str = "reading", timeout: float = 30
) -> dict[str, Any]:
    """Poll until the job runs in ``stage`` with rows read (fail if it ends first)."""

    def in_stage() -> dict[str, Any] | None:
        job = http.get(f"/jobs/{job_id}").json()
        if job["status"] in {"succeeded", "failed", "cancelled"}:
            pytest.fail(f"job {job_id} ended before its {stage!r} stage was seen: {job}")
        running = job["status"] == "running" and job["stage"] == stage and job["rows_read"] > 0
        return job if running else None

    return wait_until(in_stage, timeout, interval=0.05, message=f"job {job_id} in {stage!r}")
