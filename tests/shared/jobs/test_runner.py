"""The runner past its commit point: once a version is being saved, nothing may turn the job
into a failure (against fakeredis with Lua, and real files)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import fakeredis
import pytest

from shared.data.store import DatasetStore
from shared.jobs import runner
from shared.jobs.records import JobStatus
from shared.jobs.runner import TrainingContext, run_training_job
from shared.jobs.store import JobStore
from shared.registry.versions import ModelRegistry, ModelVersion
from shared.registry_events import AliasAnnouncer, alias_channel
from tests.conftest import MakeDataset
from tests.shared.registry.helper import tiny_model
from tests.worker.test_tasks import PARAMS


class LeaseLapsesWhileSaving(ModelRegistry):
    """Drops the job's lease while the version is written, as a worker starved of CPU (or a
    Redis blip longer than the lease) would: the job is then read as lost."""

    def __init__(self, root: Path, jobs: JobStore, client: fakeredis.FakeRedis) -> None:
        super().__init__(root)
        self.jobs, self.client = jobs, client
        self.job_id = ""

    def save_version(self, model: Any, metadata: dict[str, Any]) -> ModelVersion:
        saved = super().save_version(model, metadata)
        self.client.delete(self.jobs.lease_key(self.job_id))
        assert self.jobs.get(self.job_id).error == {
            "code": "worker_lost",
            "message": "the worker running this job stopped (its lease was not renewed for 30 s)",
        }
        return saved


@pytest.fixture
def context(tmp_path: Path, make_dataset: MakeDataset) -> TrainingContext:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    jobs = JobStore(client, prefix="test", lease_seconds=30)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "cases.csv").write_bytes(make_dataset(20_000, 7).read_bytes())
    return TrainingContext(
        jobs=jobs,
        registry=LeaseLapsesWhileSaving(tmp_path / "models", jobs, client),
        datasets=DatasetStore(data_dir, "cases.csv", 1000),
        chunk_rows=2000,
        worker_name="test-worker",
    )


def test_a_lease_lapsing_after_the_commit_point_does_not_fail_a_saved_version(
    context: TrainingContext,
) -> None:
    job, _ = context.jobs.create("training", PARAMS)
    assert isinstance(context.registry, LeaseLapsesWhileSaving)
    context.registry.job_id = job.job_id

    run_training_job(context, job.job_id)

    done = context.jobs.get(job.job_id)
    assert (done.status, done.error) == (JobStatus.SUCCEEDED, None)
    assert done.result is not None and done.result["version"] == "v1"
    assert context.registry.production_version() == "v1"
    finished = context.jobs.metrics().finished
    assert finished.get(("training", "failed"), 0) == 0
    assert finished[("training", "succeeded")] == 1
    histogram = context.jobs.metrics().durations[("training", "failed")]
    assert histogram.count == 0 and all(n == 0 for _, n in histogram.buckets)


def test_a_job_lost_before_its_commit_point_stays_failed(context: TrainingContext) -> None:
    """The revival is only for a job past its commit point: a lost job that never committed
    cannot be turned into a success by a late finish."""
    job, _ = context.jobs.create("training", PARAMS)
    jobs = context.jobs
    assert jobs.start(job.job_id, "w") is not None
    assert isinstance(context.registry, LeaseLapsesWhileSaving)
    context.registry.client.delete(jobs.lease_key(job.job_id))
    assert jobs.get(job.job_id).status is JobStatus.FAILED
    assert jobs.finish(job.job_id, JobStatus.SUCCEEDED, result={"version": "v9"}) is False
    assert jobs.get(job.job_id).error is not None
    assert jobs.get(job.job_id).result is None


def test_the_test_delay_pauses_after_every_chunk_and_a_cancel_still_stops_it(
    tmp_path: Path, make_dataset: MakeDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TEST_TRAINING_DELAY_SECONDS, the lever the integration tests slow trainings with: one
    pause per chunk read, after its progress is reported, so a cancel is still obeyed at the
    next chunk. The runner's clock is the test's: no real waiting, and no race."""
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    jobs = JobStore(client, prefix="test", lease_seconds=30)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "cases.csv").write_bytes(make_dataset(20_000, 7).read_bytes())
    context = TrainingContext(
        jobs=jobs,
        registry=ModelRegistry(tmp_path / "models"),
        datasets=DatasetStore(data_dir, "cases.csv", 1000),
        chunk_rows=2000,
        worker_name="test-worker",
        chunk_delay_seconds=0.5,
    )
    job, _ = jobs.create("training", PARAMS)
    pauses: list[tuple[float, int]] = []
    offset = 0.0

    def sleep(seconds: float) -> None:
        nonlocal offset
        offset += seconds
        pauses.append((seconds, jobs.get(job.job_id).rows_read))
        if len(pauses) == 3:
            jobs.request_cancel(job.job_id)

    clock = SimpleNamespace(monotonic=lambda: time.monotonic() + offset, sleep=sleep)
    monkeypatch.setattr(runner, "time", clock)

    run_training_job(context, job.job_id)

    assert [seconds for seconds, _ in pauses] == [0.5, 0.5, 0.5]  # chunks 1 to 3
    assert [rows for _, rows in pauses][1:] == [4000, 6000]  # each chunk written, then paused
    done = jobs.get(job.job_id)
    # cancelled during the third pause, stopped on reporting the fourth chunk
    assert done.status is JobStatus.CANCELLED and done.rows_read == 8000
    assert context.registry.list_versions() == []


def test_retention_runs_after_the_job_succeeded_and_announces_what_it_deleted(
    tmp_path: Path, make_dataset: MakeDataset
) -> None:
    """MODEL_RETENTION=1: after v4 is saved and promoted (v1 goes to the history), of v2 and
    v3 only the newest stays."""
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    jobs = JobStore(client, prefix="test", lease_seconds=30)
    registry = ModelRegistry(tmp_path / "models")
    for i in range(3):
        registry.save_version(tiny_model(i), {})
    registry.promote("v1")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "cases.csv").write_bytes(make_dataset(20_000, 7).read_bytes())
    context = TrainingContext(
        jobs=jobs,
        registry=registry,
        datasets=DatasetStore(data_dir, "cases.csv", 1000),
        chunk_rows=5000,
        worker_name="test-worker",
        model_retention=1,
        announcer=AliasAnnouncer(client, "test"),
    )
    subscription = client.pubsub(ignore_subscribe_messages=True)
    subscription.subscribe(alias_channel("test"))
    job, _ = jobs.create("training", PARAMS)

    run_training_job(context, job.job_id)

    done = jobs.get(job.job_id)
    assert done.status is JobStatus.SUCCEEDED and done.result is not None
    assert done.result["version"] == "v4" and done.result["promoted"] is True
    assert [info.version for info in registry.list_versions()] == ["v1", "v3", "v4"]
    heard = [subscription.get_message(timeout=0.1) for _ in range(5)]  # bounded: 5 reads
    assert [json.loads(m["data"]) for m in heard if m is not None] == [
        {"version": "v2", "action": "delete"}
    ]
