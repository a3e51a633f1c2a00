"""Several serving processes on one Redis: two API processes (``API_WORKERS=2``) and two
prediction workers, real processes all.

- Promotions reach every prediction worker at once, announced over Redis: the workers here poll
  the alias only once an hour (``MODEL_POLL_SECONDS=3600``), so whatever they serve within the
  tests' bounds came by an announcement. (The poll as the fallback for a missed announcement is
  tested against a real Redis in tests/shared/test_registry_events.py, and by
  test_service.py's promotion made with no Redis at all.)
- Whichever API process answers, predictions work, jobs are found, an idempotency key names
  one job and ``/metrics`` counts every request. Which process answered is read from the
  processes' own metrics files (one per process, in the stack's ``PROMETHEUS_MULTIPROC_DIR``),
  so each test can insist that both did.

``pytest -s`` prints the measured promotion-to-served times.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from cli.stack import LocalStack, ManagedProcess, StackError
from tests.conftest import SEVERE_CASE
from tests.integration.conftest import new_stack, passing_versions, wait_for_job, wait_until

pytestmark = pytest.mark.integration

RVT = str(Path(sys.executable).parent / "rvt")
PREDICTION_WORKERS = ("worker-prediction", "worker-prediction-2")
#: A bound on a bug, not on the machine's speed: announcements arrive in milliseconds.
SERVED_WITHIN_SECONDS = 10.0
#: Requests a test may send while it waits for both API processes to have answered one.
MAX_TRIES = 400

#: One sample's key: metric name and its labels.
Sample = tuple[str, tuple[tuple[str, str], ...]]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """Overrides the conftest's stack for this module: 2 API processes, 2 prediction workers."""
    tmp = tmp_path_factory.mktemp("scale-out")
    running = new_stack(
        tmp,
        {
            "API_WORKERS": "2",
            "MODEL_POLL_SECONDS": "3600",
            "LOG_FORMAT": "json",
            "PROMETHEUS_MULTIPROC_DIR": str(tmp / "metrics"),
        },
    )
    try:
        running.start_redis()
        running.start_worker("training")
        for name in PREDICTION_WORKERS:
            running.start_worker("prediction", name=name)
        running.start_api()
        running.wait_ready(90)
        with httpx.Client(base_url=running.base_url, timeout=10) as http:
            wait_until(
                lambda: 'rvt_workers_alive{queue="prediction"} 2.0' in http.get("/metrics").text,
                30,
                0.2,
                "both prediction workers to announce themselves",
            )
    except StackError as exc:
        logs = "\n".join(f"--- {p.name}\n{p.log_tail()}" for p in running.processes.values())
        running.stop()
        pytest.fail(f"the stack did not start: {exc}\n{logs}")
    try:
        yield running
    finally:
        running.stop()


# -- which prediction worker serves what -------------------------------------------------------


def serving_events(process: ManagedProcess) -> list[dict[str, Any]]:
    """The worker's "serving model vN" log lines (JSON), oldest first."""
    assert process.log_path is not None
    events = []
    for line in process.log_path.read_text(errors="replace").splitlines():
        if '"serving model' not in line:
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        event["at"] = datetime.fromisoformat(event["ts"].replace("Z", "+00:00")).timestamp()
        events.append(event)
    return events


def wait_until_served(stack: LocalStack, version: str, since: float) -> dict[str, dict[str, Any]]:
    """Each prediction worker's first swap to ``version`` after ``since`` (a wall-clock time)."""

    def swaps() -> dict[str, dict[str, Any]] | None:
        found = {}
        for name in PREDICTION_WORKERS:
            events = serving_events(stack.processes[name])
            # log times have millisecond resolution: a swap in the same millisecond is after
            match = [e for e in events if e["model_version"] == version and e["at"] >= since - 1e-3]
            if not match:
                return None
            found[name] = match[0]
        return found

    result = wait_until(swaps, SERVED_WITHIN_SECONDS, 0.01, f"every prediction worker on {version}")
    return dict(result)


def predict(http: httpx.Client) -> httpx.Response:
    return http.post("/predict", json={"records": [SEVERE_CASE]})


class Answer(NamedTuple):
    """One prediction as a load client saw it."""

    client: int
    #: When the request was sent (``time.monotonic()`` in this process).
    sent: float
    status: int
    version: str | None


class Load:
    """``clients`` threads predicting in a loop, each on its own keep-alive connection."""

    def __init__(self, base_url: str, clients: int = 8) -> None:
        self.base_url = base_url
        #: In the order they were received.
        self.answers: list[Answer] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(clients)
        ]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)

    def sent_after(self, moment: float, at_least: int) -> list[Answer] | None:
        """The answers to requests sent after ``moment`` (a ``time.monotonic()`` reading), once
        there are ``at_least`` of them (None until then)."""
        found = [answer for answer in list(self.answers) if answer.sent > moment]
        return found if len(found) >= at_least else None

    def _run(self, client: int) -> None:
        with httpx.Client(base_url=self.base_url, timeout=15) as http:
            while not self._stop.is_set():
                sent = time.monotonic()
                try:
                    response = predict(http)
                except httpx.HTTPError as exc:  # counted as a failure, like any non-200
                    self.answers.append(Answer(client, sent, 0, type(exc).__name__))
                    continue
                ok = response.status_code == 200
                version = response.json()["model_version"] if ok else None
                self.answers.append(Answer(client, sent, response.status_code, version))


def test_a_training_that_promotes_reaches_both_prediction_workers(
    stack: LocalStack, client: httpx.Client
) -> None:
    since = time.time()
    response = client.post("/train", json={"params": {"C": 0.5}})
    assert response.status_code == 202, response.text
    job = wait_for_job(client, response.json()["job_id"])
    assert job["status"] == "succeeded" and job["result"]["promoted"], job
    version = job["result"]["version"]
    swaps = wait_until_served(stack, version, since)
    assert {event["trigger"] for event in swaps.values()} == {"notification"}
    assert predict(client).json()["model_version"] == version


def test_promotions_reach_every_worker_at_once_and_no_request_fails(
    stack: LocalStack, client: httpx.Client
) -> None:
    """Eight clients predict without a pause while production flips between two versions,
    through the API (promote and rollback): every worker swaps within the bound, by the
    announcement, and no request fails."""
    first, second = passing_versions(client, 2)[:2]
    client.post(f"/models/{first}/promote").raise_for_status()
    times: dict[str, list[float]] = {name: [] for name in PREDICTION_WORKERS}
    with Load(stack.base_url) as load:
        wait_until(lambda: len(load.answers) > 50, 30, message="the load to flow")
        steps = [("promote", second), ("promote", first)] * 3 + [("rollback", second)]
        for action, target in steps:
            since = time.time()
            path = "/models/rollback" if action == "rollback" else f"/models/{target}/promote"
            answer = client.post(path)
            assert answer.status_code == 200 and answer.json()["production"] == target, answer.text
            for name, event in wait_until_served(stack, target, since).items():
                assert event["trigger"] == "notification", event
                times[name].append(event["at"] - since)
            # Every request sent once both workers have logged the swap (a worker swaps before
            # it logs) is answered by the new version. A request sent before may still be
            # answered by the old one, and that answer may come after any number of newer
            # answers to the other clients: the order of receipt proves nothing.
            fresh = wait_until(
                partial(load.sent_after, time.monotonic(), 16), 30, message="more answers"
            )
            stale = [answer for answer in fresh if answer.version != target]
            assert not stale, f"sent after both workers served {target}: {stale[:5]}"
    failed = [answer for answer in load.answers if answer.status != 200]
    assert failed == [], f"{len(failed)} of {len(load.answers)} failed: {failed[:10]}"
    every = [seconds for series in times.values() for seconds in series]
    print(
        f"\npromotion to served (from the POST to the worker's swap, {len(steps)} promotions, "
        f"{len(load.answers)} predictions at c=8, none failed): median "
        f"{statistics.median(every) * 1000:.0f} ms, max {max(every) * 1000:.0f} ms; "
        + ", ".join(
            f"{name} median {statistics.median(series) * 1000:.0f} ms"
            for name, series in times.items()
        )
    )


def test_a_promotion_made_with_the_cli_is_announced_on_redis_url(
    stack: LocalStack, client: httpx.Client
) -> None:
    versions = passing_versions(client, 2)
    production = client.get("/models").json()["production"]
    target = next(version for version in versions if version != production)
    env = {**os.environ, "MODELS_DIR": str(stack.models_dir), "REDIS_URL": str(stack.redis_url)}
    since = time.time()
    subprocess.run([RVT, "models", "promote", target], env=env, check=True, timeout=60)
    swaps = wait_until_served(stack, target, since)
    assert {event["trigger"] for event in swaps.values()} == {"notification"}


# -- which API process answered what ------------------------------------------------------------


def samples_by_process(folder: Path) -> dict[int, Counter[Sample]]:
    """Every API process's own counters, read from its files alone (``counter_<pid>.db``)."""
    found: dict[int, Counter[Sample]] = {}
    for path in folder.glob("counter_*.db"):
        pid = int(re.fullmatch(r"counter_(\d+)\.db", path.name).group(1))  # type: ignore[union-attr]
        with tempfile.TemporaryDirectory() as alone:
            shutil.copy(path, alone)
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=alone)
            found[pid] = Counter(
                {
                    (sample.name, tuple(sorted(sample.labels.items()))): sample.value
                    for metric in registry.collect()
                    for sample in metric.samples
                }
            )
    return found


def requests_sample(method: str, route: str, status: int) -> Sample:
    labels = {"method": method, "route": route, "status": str(status)}
    return ("rvt_http_requests_total", tuple(sorted(labels.items())))


class Processes:
    """Before/after views of the API processes' counters."""

    def __init__(self, stack: LocalStack) -> None:
        self.folder = Path(stack.process_env()["PROMETHEUS_MULTIPROC_DIR"])
        self.before = samples_by_process(self.folder)

    def grown(self, sample: Sample) -> dict[int, float]:
        """By how much ``sample`` grew in each process since this object was made."""
        now = samples_by_process(self.folder)
        grown = {
            pid: counts[sample] - self.before.get(pid, Counter())[sample]
            for pid, counts in now.items()
        }
        return {pid: amount for pid, amount in grown.items() if amount}


def fresh_connection(stack: LocalStack) -> httpx.Client:
    """A new connection per request: the kernel hands each to either API process."""
    return httpx.Client(base_url=stack.base_url, timeout=10)


def until_both_answered(
    stack: LocalStack, send: Callable[[httpx.Client], None], sample: Sample
) -> tuple[int, dict[int, float]]:
    """Send on fresh connections until two API processes counted ``sample``: (sent, growth)."""
    processes = Processes(stack)
    for sent in range(1, MAX_TRIES + 1):
        with fresh_connection(stack) as http:
            send(http)
        grown = processes.grown(sample)
        if len(grown) >= 2:
            return sent, grown
    pytest.fail(f"one API process answered all of {MAX_TRIES} requests: {grown}")


def test_the_api_runs_as_two_processes(stack: LocalStack) -> None:
    def healthz(http: httpx.Client) -> None:
        assert http.get("/healthz").status_code == 200

    _, grown = until_both_answered(stack, healthz, requests_sample("GET", "/healthz", 200))
    assert len(grown) == 2


def test_predictions_succeed_through_both_api_processes(stack: LocalStack, production: str) -> None:
    def one(http: httpx.Client) -> None:
        response = predict(http)
        assert response.status_code == 200, response.text
        assert response.json()["model_version"] == production

    until_both_answered(stack, one, requests_sample("POST", "/predict", 200))


def test_a_job_made_through_one_process_is_read_through_the_other(
    stack: LocalStack, client: httpx.Client
) -> None:
    processes = Processes(stack)
    with fresh_connection(stack) as http:
        made = http.post("/train", json={"promote": False})
    assert made.status_code == 202, made.text
    job_id = made.json()["job_id"]
    (creator,) = processes.grown(requests_sample("POST", "/train", 202))
    polled = requests_sample("GET", "/jobs/{job_id}", 200)
    for _ in range(MAX_TRIES):
        with fresh_connection(stack) as http:
            job = http.get(f"/jobs/{job_id}")
        assert job.status_code == 200 and job.json()["job_id"] == job_id, job.text
        if set(processes.grown(polled)) - {creator}:
            break
    else:
        pytest.fail(f"process {creator} answered every poll")
    assert wait_for_job(client, job_id)["status"] == "succeeded"


def test_an_idempotent_retry_lands_on_the_same_job_whichever_process_answers(
    stack: LocalStack, client: httpx.Client
) -> None:
    key = uuid.uuid4().hex
    jobs_before = {
        job["job_id"] for job in client.get("/jobs", params={"limit": 100}).json()["jobs"]
    }
    ids: set[str] = set()

    def retry(http: httpx.Client) -> None:
        response = http.post("/train", json={"promote": False}, headers={"Idempotency-Key": key})
        assert response.status_code == 202, response.text
        ids.add(response.json()["job_id"])

    until_both_answered(stack, retry, requests_sample("POST", "/train", 202))
    assert len(ids) == 1
    (job_id,) = ids
    listed = {job["job_id"] for job in client.get("/jobs", params={"limit": 100}).json()["jobs"]}
    assert listed - jobs_before == {job_id}  # one job, however many retries
    assert wait_for_job(client, job_id)["status"] == "succeeded"


def test_metrics_count_every_request_whichever_process_answered(stack: LocalStack) -> None:
    """``/healthz`` is asked by nothing but this test (readiness checks use ``/readyz``)."""

    def healthz_count(http: httpx.Client) -> float:
        text = http.get("/metrics").text
        pattern = r'rvt_http_requests_total\{method="GET",route="/healthz",status="200"\} (\S+)'
        found = re.search(pattern, text)
        return float(found.group(1)) if found else 0.0

    with fresh_connection(stack) as http:
        before = healthz_count(http)

    def healthz(http: httpx.Client) -> None:
        assert http.get("/healthz").status_code == 200

    sent, _ = until_both_answered(stack, healthz, requests_sample("GET", "/healthz", 200))
    extra = 40  # and some more, spread as the kernel likes
    for _ in range(extra):
        with fresh_connection(stack) as http:
            healthz(http)
    counts: list[float] = []

    def scrape(http: httpx.Client) -> None:
        counts.append(healthz_count(http))

    # scrapes answered by each process: every one sums both processes' counts
    until_both_answered(stack, scrape, requests_sample("GET", "/metrics", 200))
    assert set(counts) == {before + sent + extra}, (before, sent, extra, counts)
