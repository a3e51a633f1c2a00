"""The tasks' own logic, run eagerly in-process against fakeredis and real files.

Eager mode cannot show queueing, progress seen from outside, cancels of a running task or
worker loss: tests/integration does that with real processes.
"""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fakeredis
import numpy as np
import pytest

from shared.data.loader import decode_features
from shared.data.store import DatasetStore
from shared.jobs.records import JobStatus
from shared.jobs.runner import TrainingContext
from shared.jobs.store import JobStore
from shared.model.production import ProductionModel
from shared.model.scoring import EXPLAIN, encode_codes
from shared.model.training import register_run, train_model
from shared.registry.versions import ModelRegistry
from shared.registry_events import alias_channel
from shared.settings import get_settings
from tests.conftest import MakeDataset
from worker import resources, tasks
from worker.celery_app import app

PARAMS = {
    "dataset": "cases.csv",
    "params": {"C": 1.0, "class_weight": None, "max_iter": 1000},
    "test_size": 0.2,
    "random_state": 42,
    "min_roc_auc": 0.7,
    "promote": True,
}


class RecordingJobStore(JobStore):
    """The real store, also remembering the progress it was given."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.progress: list[tuple[str, float, int]] = []
        self.cancel_after: int | None = None

    def report_progress(self, job_id: str, stage: str, fraction: float, rows_read: int) -> bool:
        self.progress.append((stage, fraction, rows_read))
        if self.cancel_after is not None and len(self.progress) >= self.cancel_after:
            self.request_cancel(job_id)
        return super().report_progress(job_id, stage, fraction, rows_read)


@pytest.fixture
def redis_server() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(server=fakeredis.FakeServer())


@pytest.fixture
def context(
    tmp_path: Path, redis_server: fakeredis.FakeRedis, make_dataset: MakeDataset, monkeypatch
) -> Iterator[TrainingContext]:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "cases.csv").write_bytes(make_dataset(20_000, 7).read_bytes())
    ctx = TrainingContext(
        jobs=RecordingJobStore(redis_server, lease_seconds=30),
        registry=ModelRegistry(tmp_path / "models"),
        datasets=DatasetStore(data_dir, "cases.csv", 1000),
        chunk_rows=2000,
        worker_name="test-worker",
    )
    monkeypatch.setattr(resources, "training_context", lambda: ctx)
    monkeypatch.setattr(resources, "redis_client", lambda: redis_server)
    app.conf.update(task_always_eager=True, task_eager_propagates=True)
    yield ctx
    app.conf.update(task_always_eager=False, task_eager_propagates=False)


def test_training_task_runs_a_job_to_success(context: TrainingContext) -> None:
    job, _ = context.jobs.create("training", PARAMS)
    tasks.train.delay(job.job_id)
    done = context.jobs.get(job.job_id)
    assert done.status is JobStatus.SUCCEEDED, done.error
    assert done.progress == 1.0 and done.finished_at and done.started_at
    assert done.result is not None
    assert done.result["version"] == "v1" and done.result["promoted"] is True
    assert done.result["metrics"]["roc_auc"] > 0.8
    assert context.registry.production_version() == "v1"
    stages = [stage for stage, _, _ in context.jobs.progress]  # type: ignore[attr-defined]
    assert stages.index("reading") < stages.index("fitting") < stages.index("evaluating")
    assert stages[-1] == "done"
    rows = [r for _, _, r in context.jobs.progress]  # type: ignore[attr-defined]
    assert rows[-1] == 20_000


def test_a_training_that_promotes_announces_it(
    context: TrainingContext, redis_server: fakeredis.FakeRedis
) -> None:
    """Prediction workers elsewhere hear of the promotion at once; a version saved without
    promotion is not announced (nothing changed for them)."""
    pubsub = redis_server.pubsub()
    pubsub.subscribe(alias_channel(get_settings().redis_prefix))
    confirmed = pubsub.get_message(timeout=1)
    assert confirmed is not None and confirmed["type"] == "subscribe"

    def announcements() -> list[dict[str, Any]]:
        found = []
        while (message := pubsub.get_message(timeout=0.2)) is not None:
            found.append(json.loads(message["data"]))
        return found

    job, _ = context.jobs.create("training", PARAMS)
    tasks.train.delay(job.job_id)
    assert announcements() == [{"version": "v1", "action": "promote"}]
    quiet, _ = context.jobs.create("training", {**PARAMS, "promote": False})
    tasks.train.delay(quiet.job_id)
    assert context.jobs.get(quiet.job_id).result["version"] == "v2"  # type: ignore[index]
    assert announcements() == []


def test_training_task_is_idempotent_per_job(context: TrainingContext) -> None:
    job, _ = context.jobs.create("training", PARAMS)
    tasks.train.delay(job.job_id)
    tasks.train.delay(job.job_id)  # a redelivered message
    assert [v.version for v in context.registry.list_versions()] == ["v1"]
    assert context.jobs.get(job.job_id).attempts == 1


def test_a_job_cancelled_while_queued_never_runs(context: TrainingContext) -> None:
    job, _ = context.jobs.create("training", PARAMS)
    context.jobs.request_cancel(job.job_id)
    tasks.train.delay(job.job_id)
    assert context.jobs.get(job.job_id).status is JobStatus.CANCELLED
    assert context.registry.list_versions() == []


def test_a_cancel_during_training_saves_nothing(context: TrainingContext) -> None:
    context.jobs.cancel_after = 2  # type: ignore[attr-defined]
    job, _ = context.jobs.create("training", PARAMS)
    tasks.train.delay(job.job_id)
    final = context.jobs.get(job.job_id)
    assert final.status is JobStatus.CANCELLED
    assert context.registry.list_versions() == []


def test_an_unusable_dataset_fails_the_job_with_the_loader_message(
    context: TrainingContext,
) -> None:
    header = (
        "current_status,sex,age_group,race_ethnicity_combined,hosp_yn,icu_yn,medcond_yn,death_yn\n"
    )
    row = "Laboratory-confirmed case,Male,80+ Years,Unknown,Yes,Yes,Yes,No\n"
    (context.datasets.root / "no_deaths.csv").write_text(header + row * 10)
    job, _ = context.jobs.create("training", {**PARAMS, "dataset": "no_deaths.csv"})
    tasks.train.delay(job.job_id)
    failed = context.jobs.get(job.job_id)
    assert failed.status is JobStatus.FAILED
    assert failed.error is not None and failed.error["code"] == "invalid_dataset"
    assert "both Yes and No are needed" in failed.error["message"]


def test_a_dataset_removed_after_submission_fails_cleanly(context: TrainingContext) -> None:
    job, _ = context.jobs.create("training", {**PARAMS, "dataset": "gone.csv"})
    tasks.train.delay(job.job_id)
    failed = context.jobs.get(job.job_id)
    assert failed.status is JobStatus.FAILED
    assert failed.error is not None and "gone.csv" in failed.error["message"]


def test_predict_task_publishes_scores_from_the_production_model(
    context: TrainingContext,
    redis_server: fakeredis.FakeRedis,
    make_dataset: MakeDataset,
    monkeypatch,
) -> None:
    holder = ProductionModel(context.registry)
    monkeypatch.setattr(resources, "production_model", lambda: holder)
    pubsub = redis_server.pubsub()
    pubsub.subscribe("replies")
    pubsub.get_message(timeout=1)

    def reply() -> dict[str, Any]:
        message = pubsub.get_message(timeout=1)
        assert message is not None and message["type"] == "message"
        return json.loads(message["data"])

    codes = np.array([[0, 1, 8, 6, 0, 0, 0], [0, 0, 0, 3, 1, 1, 1]], dtype=np.int8)
    tasks.predict.delay("replies", [["r1", encode_codes(codes)]])
    assert reply()["replies"][0]["error"]["code"] == "no_production_model"

    run = train_model(make_dataset(20_000, 7))
    register_run(context.registry, run)
    tasks.predict.delay("replies", [["r1", encode_codes(codes)], ["r2", encode_codes(codes[:1])]])
    first, second = reply()["replies"]
    expected = run.pipeline.predict_proba(decode_features(codes))[:, 1]
    assert first["id"] == "r1" and first["version"] == "v1"
    np.testing.assert_allclose(first["probabilities"], expected, atol=1e-9)
    assert second["id"] == "r2" and len(second["probabilities"]) == 1

    tasks.predict.delay("replies", [["bad", "zz"]])
    assert reply()["replies"][0]["error"]["code"] == "bad_request"


def test_the_worker_makes_the_default_dataset_on_first_use(context: TrainingContext) -> None:
    default = context.datasets.root / "synthetic_default.csv"
    context.datasets.default_name = default.name
    context.datasets.default_rows = 5_000
    assert not default.exists()
    job, _ = context.jobs.create("training", {**PARAMS, "dataset": default.name})
    tasks.train.delay(job.job_id)
    done = context.jobs.get(job.job_id)
    assert done.status is JobStatus.SUCCEEDED, done.error
    assert default.is_file()
    assert done.result is not None and done.result["rows"]["read"] == 5_000


BOOSTING = {**PARAMS, "estimator": "hist_gradient_boosting", "params": {"max_iter": 30}}


def test_a_gradient_boosting_job_trains_saves_and_names_its_estimator(
    context: TrainingContext,
) -> None:
    job, _ = context.jobs.create("training", BOOSTING)
    tasks.train.delay(job.job_id)
    done = context.jobs.get(job.job_id)
    assert done.status is JobStatus.SUCCEEDED, done.error
    assert done.result is not None and done.result["estimator"] == "hist_gradient_boosting"
    saved = context.registry.get(done.result["version"]).metadata
    assert saved["estimator"] == "hist_gradient_boosting"
    assert saved["params"]["max_iter"] == 30 and saved["params"]["max_leaf_nodes"] == 31


def test_a_job_whose_parameters_the_estimator_refuses_fails_saving_nothing(
    context: TrainingContext,
) -> None:
    """The API validates first; a job written another way is still refused, by the domain."""
    params = {**BOOSTING, "params": {"min_samples_leaf": 20}}
    job, _ = context.jobs.create("training", params)
    tasks.train.delay(job.job_id)
    failed = context.jobs.get(job.job_id)
    assert failed.status is JobStatus.FAILED
    assert failed.error is not None and failed.error["code"] == "invalid_parameter"
    assert "min_samples_leaf" in failed.error["message"]
    assert context.registry.list_versions() == []


def test_predict_task_explains_the_requests_that_ask(
    context: TrainingContext,
    redis_server: fakeredis.FakeRedis,
    make_dataset: MakeDataset,
    monkeypatch,
) -> None:
    holder = ProductionModel(context.registry)
    monkeypatch.setattr(resources, "production_model", lambda: holder)
    run = train_model(make_dataset(20_000, 7))
    register_run(context.registry, run)
    pubsub = redis_server.pubsub()
    pubsub.subscribe("replies")
    pubsub.get_message(timeout=1)
    codes = np.array([[0, 1, 8, 6, 0, 0, 0], [0, 0, 0, 3, 1, 1, 1]], dtype=np.int8)
    tasks.predict.delay(
        "replies", [["plain", encode_codes(codes)], ["why", encode_codes(codes), EXPLAIN]]
    )
    message = pubsub.get_message(timeout=1)
    assert message is not None and message["type"] == "message"
    plain, explained = json.loads(message["data"])["replies"]
    assert "explanation" not in plain
    assert explained["probabilities"] == plain["probabilities"]
    explanation = explained["explanation"]
    log_odds = run.pipeline.decision_function(decode_features(codes))
    totals = explanation["baseline"] + np.sum(explanation["contributions"], axis=1)
    np.testing.assert_allclose(totals, log_odds, rtol=0, atol=1e-9)
