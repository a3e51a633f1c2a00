"""Job records: every transition, the cancel/commit race, leases, expiry of every key.

Core tests run twice: on fakeredis and on a private ``redis-server`` started for this module on
a free port (never the shared one on 6379). Each test uses its own key prefix.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import fakeredis
import pytest
import redis

from shared.errors import IdempotencyConflictError, JobConflictError, JobNotFoundError
from shared.jobs.metrics import DURATION_BUCKETS
from shared.jobs.records import FINAL_STATUSES, Job, JobStatus
from shared.jobs.store import MAX_LIST_LIMIT, JobStore
from shared.presence import WorkerPresence
from tests.integration.conftest import require_redis_server

SHARED_REDIS_PORT = 6379


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


@pytest.fixture(scope="module")
def redis_server_port() -> Iterator[int]:
    """A private, throwaway redis-server: tests may do anything to it."""
    require_redis_server()
    binary = shutil.which("redis-server")
    assert binary is not None
    port = _free_port()
    assert port != SHARED_REDIS_PORT
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(port=port, socket_connect_timeout=0.2, socket_timeout=1)

        def answers() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"redis-server exited with {proc.returncode}")
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        wait_for(answers, timeout=10)
        client.close()
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.fixture(params=["fake", pytest.param("real", marks=pytest.mark.integration)])
def client(request: pytest.FixtureRequest) -> Iterator[redis.Redis]:
    if request.param == "fake":
        fake = fakeredis.FakeRedis(server=fakeredis.FakeServer())
        yield fake
        fake.close()
        return
    port = request.getfixturevalue("redis_server_port")
    assert port != SHARED_REDIS_PORT
    real = redis.Redis(port=port, socket_timeout=5)
    yield real
    real.close()


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def make_store(client: redis.Redis, prefix: str) -> Callable[..., JobStore]:
    def make(**kwargs: Any) -> JobStore:
        return JobStore(client, prefix=prefix, **kwargs)

    return make


@pytest.fixture
def store(make_store: Callable[..., JobStore]) -> JobStore:
    return make_store()


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def keys_under(client: redis.Redis, prefix: str) -> list[str]:
    return sorted(text(k) for k in client.scan_iter(match=f"{prefix}:*", count=1000))


# --- bringing a job to each state ------------------------------------------------------------

STATES = ["queued", "running", "cancel_requested", "committing", "succeeded", "failed", "cancelled"]


def job_in(store: JobStore, state: str) -> str:
    job, _ = store.create("train", {"state": state})
    if state == "queued":
        return job.job_id
    if state == "cancelled":
        store.request_cancel(job.job_id)
        return job.job_id
    assert store.start(job.job_id, "w1") is not None
    if state == "cancel_requested":
        store.request_cancel(job.job_id)
    elif state == "committing":
        assert store.begin_commit(job.job_id)
    elif state == "succeeded":
        assert store.begin_commit(job.job_id)
        assert store.finish(job.job_id, JobStatus.SUCCEEDED, result={"version": "v1"})
    elif state == "failed":
        assert store.finish(job.job_id, JobStatus.FAILED, error={"code": "boom", "message": "x"})
    return job.job_id


def state_of(job: Job) -> str:
    if job.status is JobStatus.RUNNING:
        if job.committing:
            return "committing"
        return "cancel_requested" if job.cancel_requested else "running"
    return job.status.value


# --- create / get / list ---------------------------------------------------------------------


def test_create_and_get(store: JobStore) -> None:
    job, created = store.create("train", {"dataset": "a.csv", "n": 3})
    assert created
    assert len(job.job_id) == 32
    assert job.status is JobStatus.QUEUED
    assert job.progress == 0.0
    assert job.stage is None and job.started_at is None and job.finished_at is None
    assert job.result is None and job.error is None and job.worker is None
    assert not job.cancel_requested and not job.committing and job.attempts == 0
    assert job.submitted_at.endswith("+00:00")
    assert store.get(job.job_id) == job
    assert set(job.public()) == {
        "job_id",
        "kind",
        "status",
        "progress",
        "stage",
        "rows_read",
        "submitted_at",
        "started_at",
        "finished_at",
        "result",
        "error",
    }
    assert job.public()["status"] == "queued"


@pytest.mark.parametrize("job_id", ["0" * 32, "nope", "../x", "a" * 32 + ":lease", ""])
def test_unknown_id(store: JobStore, job_id: str) -> None:
    with pytest.raises(JobNotFoundError) as info:
        store.get(job_id)
    assert info.value.status_code == 404
    assert repr(job_id) in info.value.message
    with pytest.raises(JobNotFoundError):
        store.request_cancel(job_id)
    assert store.start(job_id, "w") is None
    assert store.renew_lease(job_id, "w") is False
    assert store.report_progress(job_id, "x", 0.5, 1) is True
    assert store.begin_commit(job_id) is False
    assert store.finish(job_id, JobStatus.FAILED) is False


def test_list_newest_first_filter_and_limit(store: JobStore) -> None:
    ids = [store.create("train", {"i": i})[0].job_id for i in range(6)]
    assert [j.job_id for j in store.list()] == ids[::-1]
    assert [j.job_id for j in store.list(limit=2)] == ids[:-3:-1]
    assert store.list(limit=0) == []
    store.start(ids[1], "w")
    store.start(ids[4], "w")
    store.request_cancel(ids[2])
    assert [j.job_id for j in store.list(JobStatus.RUNNING)] == [ids[4], ids[1]]
    assert [j.job_id for j in store.list(JobStatus.RUNNING, limit=1)] == [ids[4]]
    assert [j.job_id for j in store.list(JobStatus.CANCELLED)] == [ids[2]]
    assert store.list(JobStatus.SUCCEEDED) == []


def test_list_limit_is_capped(store: JobStore, client: redis.Redis) -> None:
    for i in range(MAX_LIST_LIMIT + 5):
        store.create("train", {"i": i})
    assert len(store.list(limit=10_000)) == MAX_LIST_LIMIT


def test_list_drops_expired_records(store: JobStore, client: redis.Redis) -> None:
    keep, _ = store.create("train", {})
    gone, _ = store.create("train", {})
    client.delete(store.job_key(gone.job_id))  # as if its TTL had run out
    assert [j.job_id for j in store.list()] == [keep.job_id]
    members = {text(m) for m in client.zrange(f"{store._prefix}:jobs", 0, -1)}
    assert members == {keep.job_id}


def test_index_trimmed_to_limit(make_store: Callable[..., JobStore], client: redis.Redis) -> None:
    store = make_store(index_limit=5)
    ids = [store.create("train", {"i": i})[0].job_id for i in range(8)]
    assert client.zcard(f"{store._prefix}:jobs") == 5
    assert [j.job_id for j in store.list()] == ids[:2:-1]
    assert store.get(ids[0]).job_id == ids[0]  # trimmed from the index, record still there


def test_works_with_decoded_responses(prefix: str) -> None:
    store = JobStore(fakeredis.FakeRedis(decode_responses=True), prefix=prefix)
    job, _ = store.create("train", {"x": "é"}, idempotency_key="k")
    assert store.start(job.job_id, "w") is not None
    assert store.report_progress(job.job_id, "fit", 0.5, 10) is False
    assert store.get(job.job_id).params == {"x": "é"}
    assert [j.job_id for j in store.list()] == [job.job_id]
    assert store.create("train", {"x": "é"}, idempotency_key="k")[0].job_id == job.job_id


# --- idempotency -----------------------------------------------------------------------------


def test_idempotency_same_body_same_job(store: JobStore) -> None:
    first, created = store.create("train", {"a": 1, "b": [1, 2]}, idempotency_key="key-1")
    assert created
    again, created_again = store.create("train", {"b": [1, 2], "a": 1}, idempotency_key="key-1")
    assert not created_again
    assert again.job_id == first.job_id
    other, created_other = store.create("train", {"a": 1, "b": [1, 2]}, idempotency_key="key-2")
    assert created_other and other.job_id != first.job_id
    plain, _ = store.create("train", {"a": 1, "b": [1, 2]})
    assert plain.job_id not in {first.job_id, other.job_id}
    assert len(store.list()) == 3


def test_idempotency_returns_current_state(store: JobStore) -> None:
    first, _ = store.create("train", {}, idempotency_key="k")
    store.start(first.job_id, "w")
    again, created = store.create("train", {}, idempotency_key="k")
    assert not created and again.status is JobStatus.RUNNING


@pytest.mark.parametrize(
    ("kind", "params"), [("train", {"a": 2}), ("evaluate", {"a": 1}), ("train", {})]
)
def test_idempotency_different_body_conflicts(
    store: JobStore, kind: str, params: dict[str, Any]
) -> None:
    first, _ = store.create("train", {"a": 1}, idempotency_key="key-1")
    with pytest.raises(IdempotencyConflictError) as info:
        store.create(kind, params, idempotency_key="key-1")
    assert info.value.status_code == 422
    assert "different request body" in info.value.message
    assert info.value.details == {"job_id": first.job_id}
    assert len(store.list()) == 1


def test_idempotency_key_reusable_once_job_record_is_gone(
    store: JobStore, client: redis.Redis
) -> None:
    first, _ = store.create("train", {"a": 1}, idempotency_key="k")
    client.delete(store.job_key(first.job_id))
    second, created = store.create("train", {"a": 2}, idempotency_key="k")
    assert created and second.job_id != first.job_id


def test_concurrent_creates_with_one_key_make_one_job(store: JobStore) -> None:
    threads = 16
    barrier = threading.Barrier(threads)

    def submit(_: int) -> tuple[str, bool]:
        barrier.wait(timeout=5)
        job, created = store.create("train", {"same": True}, idempotency_key="race")
        return job.job_id, created

    with ThreadPoolExecutor(threads) as pool:
        outcomes = list(pool.map(submit, range(threads)))
    assert len({job_id for job_id, _ in outcomes}) == 1
    assert sum(created for _, created in outcomes) == 1
    assert len(store.list()) == 1


# --- transitions -----------------------------------------------------------------------------


@pytest.mark.parametrize("state", STATES)
def test_start(store: JobStore, state: str) -> None:
    job_id = job_in(store, state)
    before = store.get(job_id)
    started = store.start(job_id, "w2")
    if state == "queued":
        assert started is not None
        assert started.status is JobStatus.RUNNING
        assert started.worker == "w2" and started.attempts == 1 and started.started_at
        assert store.get(job_id) == started
        assert store.start(job_id, "w3") is None  # a redelivered message does nothing
    else:
        assert started is None
        assert store.get(job_id) == before


@pytest.mark.parametrize("state", STATES)
def test_heartbeat(store: JobStore, state: str) -> None:
    job_id = job_in(store, state)
    expected = state in {"running", "cancel_requested", "committing"}
    assert store.renew_lease(job_id, "w1") is expected
    assert store.renew_lease(job_id, "someone-else") is False


@pytest.mark.parametrize("state", STATES)
def test_report_progress(store: JobStore, state: str) -> None:
    job_id = job_in(store, state)
    before = store.get(job_id)
    stop = store.report_progress(job_id, "fit", 0.4, 1234)
    after = store.get(job_id)
    if state in {"running", "cancel_requested", "committing"}:
        assert stop is (state == "cancel_requested")
        assert (after.stage, after.progress, after.rows_read) == ("fit", 0.4, 1234)
    else:
        assert stop is True  # not running: the worker must not carry on
        assert after == before


CANCEL_CONFLICTS = {
    "committing": "past its commit point",
    "succeeded": "already succeeded",
    "failed": "already failed",
    "cancelled": "already cancelled",
}


@pytest.mark.parametrize("state", STATES)
def test_request_cancel(store: JobStore, state: str) -> None:
    job_id = job_in(store, state)
    before = store.get(job_id)
    if state in CANCEL_CONFLICTS:
        with pytest.raises(JobConflictError) as info:
            store.request_cancel(job_id)
        assert info.value.status_code == 409
        assert CANCEL_CONFLICTS[state] in info.value.message
        assert store.get(job_id) == before
        return
    job = store.request_cancel(job_id)
    assert store.get(job_id) == job
    if state == "queued":
        assert job.status is JobStatus.CANCELLED
        assert job.finished_at is not None
        assert job.result is None
        assert job.error == {
            "code": "cancelled",
            "message": "the job was cancelled before it started",
        }
    else:
        assert state_of(job) == "cancel_requested"
        assert job.finished_at is None


@pytest.mark.parametrize("state", STATES)
def test_begin_commit(store: JobStore, state: str) -> None:
    job_id = job_in(store, state)
    before = store.get(job_id)
    ok = store.begin_commit(job_id)
    assert ok is (state in {"running", "committing"})
    after = store.get(job_id)
    if ok:
        assert state_of(after) == "committing"
    else:
        assert after == before


@pytest.mark.parametrize("target", sorted(FINAL_STATUSES))
@pytest.mark.parametrize("state", STATES)
def test_finish(store: JobStore, client: redis.Redis, state: str, target: JobStatus) -> None:
    job_id = job_in(store, state)
    store.report_progress(job_id, "fit", 0.3, 10)
    before = store.get(job_id)
    result = {"version": "v9"} if target is JobStatus.SUCCEEDED else None
    ok = store.finish(job_id, target, result=result)
    allowed = state in {"running", "committing"} or (
        state == "cancel_requested" and target is not JobStatus.SUCCEEDED
    )
    assert ok is allowed
    after = store.get(job_id)
    if not ok:
        assert after == before
        return
    assert after.status is target
    assert after.finished_at is not None
    assert client.exists(store.lease_key(job_id)) == 0
    if target is JobStatus.SUCCEEDED:
        assert after.progress == 1.0 and after.result == {"version": "v9"} and after.error is None
    else:
        assert after.progress == 0.3 and after.result is None
        assert after.error is not None and after.error["code"] == target.value
    assert store.finish(job_id, target) is False  # only once


def test_finish_validates_its_arguments(store: JobStore) -> None:
    job_id = job_in(store, "running")
    with pytest.raises(ValueError):
        store.finish(job_id, JobStatus.RUNNING)
    with pytest.raises(ValueError):
        store.finish(job_id, JobStatus.SUCCEEDED, error={"code": "x", "message": "y"})
    with pytest.raises(ValueError):
        store.finish(job_id, JobStatus.FAILED, error={"oops": 1})
    assert store.get(job_id).status is JobStatus.RUNNING
    assert store.finish(job_id, JobStatus.FAILED, error={"code": "bad_data", "message": "m"})
    assert store.get(job_id).error == {"code": "bad_data", "message": "m"}


# --- the scenarios the API and the worker rely on ---------------------------------------------


def test_cancel_running_then_worker_stops(store: JobStore) -> None:
    job, _ = store.create("train", {})
    assert store.start(job.job_id, "w") is not None
    assert store.report_progress(job.job_id, "read", 0.2, 100) is False
    flagged = store.request_cancel(job.job_id)
    assert flagged.status is JobStatus.RUNNING and flagged.cancel_requested
    assert store.request_cancel(job.job_id).cancel_requested  # asking twice is fine
    assert store.report_progress(job.job_id, "fit", 0.5, 200) is True
    assert store.begin_commit(job.job_id) is False
    assert store.finish(job.job_id, JobStatus.SUCCEEDED, result={}) is False
    cancelled = {"code": "cancelled", "message": "stopped at fit"}
    assert store.finish(job.job_id, JobStatus.CANCELLED, error=cancelled)
    final = store.get(job.job_id)
    assert final.status is JobStatus.CANCELLED and final.error == cancelled


def test_commit_then_cancel_conflicts(store: JobStore) -> None:
    job, _ = store.create("train", {})
    store.start(job.job_id, "w")
    assert store.begin_commit(job.job_id)
    with pytest.raises(JobConflictError, match="past its commit point"):
        store.request_cancel(job.job_id)
    assert store.report_progress(job.job_id, "save", 0.9, 10) is False
    assert store.finish(job.job_id, JobStatus.SUCCEEDED, result={"version": "v1"})
    with pytest.raises(JobConflictError, match="already succeeded"):
        store.request_cancel(job.job_id)


def test_cancel_and_commit_race_has_one_winner(store: JobStore) -> None:
    jobs = []
    for i in range(40):
        job, _ = store.create("train", {"i": i})
        assert store.start(job.job_id, "w") is not None
        jobs.append(job.job_id)

    def race(job_id: str) -> tuple[bool, bool]:
        barrier = threading.Barrier(2)
        outcome: dict[str, bool] = {}

        def cancel() -> None:
            barrier.wait(timeout=5)
            try:
                store.request_cancel(job_id)
                outcome["cancel"] = True
            except JobConflictError:
                outcome["cancel"] = False

        def commit() -> None:
            barrier.wait(timeout=5)
            outcome["commit"] = store.begin_commit(job_id)

        threads = [threading.Thread(target=cancel), threading.Thread(target=commit)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
        return outcome["cancel"], outcome["commit"]

    with ThreadPoolExecutor(8) as pool:
        results = dict(zip(jobs, pool.map(race, jobs), strict=True))
    for job_id, (cancel_won, commit_won) in results.items():
        assert cancel_won != commit_won, job_id
        job = store.get(job_id)
        assert job.cancel_requested is cancel_won
        assert job.committing is commit_won


def test_progress_is_monotonic_and_clamped(store: JobStore) -> None:
    job_id = job_in(store, "running")
    store.report_progress(job_id, "read", 0.5, 100)
    store.report_progress(job_id, "read", 0.25, 150)
    job = store.get(job_id)
    assert (job.progress, job.rows_read) == (0.5, 150)
    store.report_progress(job_id, "fit", 7.0, 200)
    assert store.get(job_id).progress == 1.0
    store.report_progress(job_id, "fit", float("nan"), 200)
    assert store.get(job_id).progress == 1.0

    other = job_in(store, "running")
    store.report_progress(other, "read", -3.0, -1)
    job = store.get(other)
    assert (job.progress, job.rows_read) == (0.0, 0)
    store.report_progress(other, "read", 1e-7, 1)
    assert store.get(other).progress == pytest.approx(1e-7)


# --- leases ----------------------------------------------------------------------------------


def expire_lease(store: JobStore, client: redis.Redis, job_id: str) -> None:
    """What the lease's TTL does when its time is up, without waiting for it (the TTL itself is
    checked by :func:`test_a_lease_expires_on_its_own`)."""
    assert client.delete(store.lease_key(job_id)) == 1


def test_a_lease_expires_on_its_own(
    make_store: Callable[..., JobStore], client: redis.Redis
) -> None:
    store = make_store(lease_seconds=0.3)
    job, _ = store.create("train", {})
    store.start(job.job_id, "w")
    assert 0 < client.pttl(store.lease_key(job.job_id)) <= 300
    # only waits for time to pass: a slow machine gets there sooner, relative to the checks
    wait_for(lambda: store.get(job.job_id).status is JobStatus.FAILED)
    assert client.exists(store.lease_key(job.job_id)) == 0


def test_lost_worker_is_settled_as_failed(
    make_store: Callable[..., JobStore], client: redis.Redis
) -> None:
    store = make_store(lease_seconds=30)
    job, _ = store.create("train", {})
    store.start(job.job_id, "w")
    assert store.get(job.job_id).status is JobStatus.RUNNING
    expire_lease(store, client, job.job_id)
    lost = store.get(job.job_id)
    assert lost.status is JobStatus.FAILED
    assert lost.finished_at is not None
    assert lost.error == {
        "code": "worker_lost",
        "message": "the worker running this job stopped (its lease was not renewed for 30 s)",
    }
    # the worker, if it was only slow, learns it no longer owns the job
    assert store.renew_lease(job.job_id, "w") is False
    assert store.report_progress(job.job_id, "fit", 0.5, 1) is True
    assert store.begin_commit(job.job_id) is False
    assert store.finish(job.job_id, JobStatus.SUCCEEDED) is False
    assert store.get(job.job_id) == lost


def test_lost_worker_with_cancel_requested_is_cancelled(
    make_store: Callable[..., JobStore], client: redis.Redis
) -> None:
    store = make_store(lease_seconds=30)
    job, _ = store.create("train", {})
    store.start(job.job_id, "w")
    store.request_cancel(job.job_id)
    expire_lease(store, client, job.job_id)
    settled = store.get(job.job_id)
    assert settled.status is JobStatus.CANCELLED
    assert settled.error is not None and settled.error["code"] == "cancelled"


def test_lapsed_lease_is_settled_by_list_and_by_worker_calls(
    make_store: Callable[..., JobStore], client: redis.Redis
) -> None:
    store = make_store(lease_seconds=0.3)
    a = job_in(store, "running")
    b = job_in(store, "running")
    client.delete(store.lease_key(a), store.lease_key(b))  # both leases ran out
    assert [j.status for j in store.list()] == [JobStatus.FAILED, JobStatus.FAILED]
    c = job_in(store, "running")
    client.delete(store.lease_key(c))
    with pytest.raises(JobConflictError, match="already failed"):
        store.request_cancel(c)


def test_heartbeat_keeps_the_lease(
    make_store: Callable[..., JobStore], client: redis.Redis
) -> None:
    """A renewal puts the lease back to its full length (no race: the lease is 30 s, and its
    remaining time is set, not waited for)."""
    store = make_store(lease_seconds=30)
    job, _ = store.create("train", {})
    store.start(job.job_id, "w")
    lease = store.lease_key(job.job_id)
    client.pexpire(lease, 1_000)  # as if 29 s had gone by
    assert store.renew_lease(job.job_id, "intruder") is False
    assert client.pttl(lease) <= 1_000
    assert store.renew_lease(job.job_id, "w")
    assert 1_000 < client.pttl(lease) <= 30_000
    assert store.get(job.job_id).status is JobStatus.RUNNING


# --- expiry of every key ---------------------------------------------------------------------


def test_every_key_has_a_ttl(
    make_store: Callable[..., JobStore], client: redis.Redis, prefix: str
) -> None:
    store = make_store(ttl_seconds=3600)
    done, _ = store.create("train", {"a": 1}, idempotency_key="k1")
    store.start(done.job_id, "w")
    store.renew_lease(done.job_id, "w")
    store.report_progress(done.job_id, "fit", 0.5, 10)
    store.begin_commit(done.job_id)
    store.finish(done.job_id, JobStatus.SUCCEEDED, result={"v": 1})
    running, _ = store.create("train", {"a": 2}, idempotency_key="k2")
    store.start(running.job_id, "w")
    store.request_cancel(running.job_id)
    queued, _ = store.create("train", {"a": 3})
    store.request_cancel(job_in(store, "queued"))
    store.list()
    beats = WorkerPresence(client, prefix=prefix)
    beats.announce("training", "w")

    keys = keys_under(client, prefix)
    expected = {
        store.job_key(done.job_id),
        store.job_key(running.job_id),
        store.lease_key(running.job_id),
        store.job_key(queued.job_id),
        f"{prefix}:jobs",
        beats.key("training"),
    }
    assert expected <= set(keys)
    assert sum(k.startswith(f"{prefix}:idem:") for k in keys) == 2
    assert store.lease_key(done.job_id) not in keys  # deleted on finish
    for key in keys:
        ttl = client.pttl(key)
        assert 0 < ttl <= 3600 * 1000, (key, ttl)


def test_writes_refresh_record_and_index_ttl(
    make_store: Callable[..., JobStore], client: redis.Redis, prefix: str
) -> None:
    store = make_store(ttl_seconds=100)
    job, _ = store.create("train", {})
    client.expire(store.job_key(job.job_id), 5)
    client.expire(f"{prefix}:jobs", 5)
    store.start(job.job_id, "w")
    assert client.ttl(store.job_key(job.job_id)) > 50
    assert client.ttl(f"{prefix}:jobs") > 50


# --- worker heartbeats -----------------------------------------------------------------------


def server_now(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return float(seconds) + micros / 1_000_000


def last_heard(
    client: redis.Redis, beats: WorkerPresence, queue: str, worker: str, ago: float
) -> None:
    """Set when ``worker`` last announced itself to ``ago`` seconds before Redis's clock: a
    worker silent for longer than the TTL, without waiting that long."""
    client.zadd(beats.key(queue), {worker: server_now(client) - ago})


def test_worker_heartbeats(client: redis.Redis, prefix: str) -> None:
    beats = WorkerPresence(client, prefix=prefix, ttl_seconds=30)
    assert beats.alive("training") == []
    beats.announce("training", "w2")
    beats.announce("training", "w1")
    beats.announce("serving", "s1")
    assert beats.alive("training") == ["w1", "w2"]
    assert beats.alive("serving") == ["s1"]
    beats.leave("training", "w2")
    assert beats.alive("training") == ["w1"]
    assert 0 < client.pttl(beats.key("training")) <= 30_000

    last_heard(client, beats, "serving", "s1", ago=31)  # s1 went silent
    last_heard(client, beats, "training", "w1", ago=31)
    beats.announce("training", "w1")  # w1 is heard again
    assert beats.alive("training") == ["w1"]
    assert beats.alive("serving") == []
    last_heard(client, beats, "training", "w1", ago=29)  # silent, but within the TTL
    assert beats.alive("training") == ["w1"]


def test_presence_expires_on_its_own(client: redis.Redis, prefix: str) -> None:
    """The TTL itself, with real time: only waits for it to pass, so a slow machine gets there
    sooner, relative to the checks."""
    beats = WorkerPresence(client, prefix=prefix, ttl_seconds=0.3)
    beats.announce("training", "w1")
    wait_for(lambda: beats.alive("training") == [])
    wait_for(lambda: client.exists(beats.key("training")) == 0)


def test_worker_heartbeats_trim_stale_members(client: redis.Redis, prefix: str) -> None:
    beats = WorkerPresence(client, prefix=prefix, ttl_seconds=30)
    last_heard(client, beats, "q", "old", ago=31)
    last_heard(client, beats, "q", "quiet", ago=29)
    beats.announce("q", "new")
    members = {text(m) for m in client.zrange(beats.key("q"), 0, -1)}
    assert members == {"new", "quiet"}


# --- job metrics (recorded by the scripts that make a job final) -----------------------------


def finished(store: JobStore) -> dict[tuple[str, str], int]:
    return store.metrics().finished


def test_every_way_a_job_ends_is_counted_once(
    make_store: Callable[..., JobStore], client: redis.Redis
) -> None:
    store = make_store()
    succeeded = job_in(store, "succeeded")
    job_in(store, "failed")
    job_in(store, "cancelled")  # queued, cancelled by the API
    running = job_in(store, "cancel_requested")
    assert store.finish(running, JobStatus.CANCELLED)
    never_sent, _ = store.create("train", {"n": "unsent"})
    assert store.fail_queued(never_sent.job_id, {"code": "queue_unavailable", "message": "x"})
    lost = job_in(store, "running")
    expire_lease(store, client, lost)  # settled as failed by the next reader
    for _ in range(3):  # reading, listing, refused transitions: no double counting
        store.get(lost)
        store.list()
        assert not store.finish(succeeded, JobStatus.FAILED)
        store.fail_queued(never_sent.job_id, {"code": "x", "message": "y"})
    assert finished(store) == {
        ("train", "succeeded"): 1,
        ("train", "failed"): 3,  # a finish, a job never sent, a lost worker
        ("train", "cancelled"): 2,
    }


def test_durations_are_recorded_for_jobs_that_ran(store: JobStore, client: redis.Redis) -> None:
    """The job is made to have started 40 s ago (by Redis's clock) rather than run that long:
    its duration is then at least 40 s whatever the machine's speed, and each bucket must
    agree with the duration recorded."""
    job, _ = store.create("train", {})
    store.start(job.job_id, "w")
    client.hset(store.job_key(job.job_id), "started_ts", f"{server_now(client) - 40:.6f}")
    assert store.finish(job.job_id, JobStatus.FAILED)
    job_in(store, "cancelled")  # never started: counted, but no duration
    durations = store.metrics().durations
    assert set(durations) == {("train", "failed")}
    histogram = durations[("train", "failed")]
    assert histogram.count == 1 and histogram.sum >= 40
    assert histogram.buckets == tuple(
        (bound, int(histogram.sum <= bound)) for bound, _ in histogram.buckets
    )
    assert [bound for bound, _ in histogram.buckets] == list(DURATION_BUCKETS)
    assert dict(histogram.buckets)[30] == 0 and dict(histogram.buckets)[3600] == 1


def test_metrics_keys_expire_and_are_refreshed(
    make_store: Callable[..., JobStore], client: redis.Redis, prefix: str
) -> None:
    store = make_store(ttl_seconds=100)
    job_in(store, "succeeded")
    keys = [f"{prefix}:metrics:jobs", f"{prefix}:metrics:job_seconds"]
    for key in keys:
        client.expire(key, 5)
    job_in(store, "failed")
    for key in keys:
        assert 50 < client.ttl(key) <= 100, key


def test_metrics_of_an_empty_store_are_empty(store: JobStore) -> None:
    assert store.metrics().finished == {} and store.metrics().durations == {}
