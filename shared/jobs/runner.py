"""Running one training job: the domain half of the Celery training task.

The job record in Redis is the source of truth. This function moves it through its states by
compare-and-set, keeps a lease on it while the training runs (so a worker that dies is seen as
lost within seconds, not when the broker redelivers an hour later), publishes progress, obeys
a cancel at every progress report, and saves the new version only after winning the commit
point, so a cancel and a commit can never both succeed. It is idempotent per job id: a job
that is not ``queued`` when its message arrives (cancelled, finished, or running elsewhere) is
left alone. Once the job's result is recorded, the retention setting (``MODEL_RETENTION``) is
applied to the registry, and what it deleted is announced to the serving processes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from shared import registry_events, stores
from shared.data.store import DatasetStore
from shared.errors import DomainError, TrainingCancelled
from shared.jobs.lease import JobLease
from shared.jobs.records import JobStatus
from shared.jobs.store import JobStore
from shared.model.pipeline import DEFAULT_ESTIMATOR, estimator_params
from shared.model.training import Progress, SplitParams, register_run, train_model
from shared.registry.versions import ModelRegistry
from shared.registry_events import AliasAnnouncer
from shared.settings import get_settings

log = logging.getLogger(__name__)

#: Progress is written at most this often; the cancel flag is read on every write.
PROGRESS_INTERVAL_SECONDS = 0.2


@dataclass
class TrainingContext:
    """What a training worker process holds once and reuses for every job."""

    jobs: JobStore
    registry: ModelRegistry
    datasets: DatasetStore
    chunk_rows: int
    worker_name: str
    #: ``TEST_TRAINING_DELAY_SECONDS``: a pause after each chunk read, for tests only.
    chunk_delay_seconds: float = 0.0
    #: ``MODEL_RETENTION``: versions kept besides production and history (0: all).
    model_retention: int = field(default_factory=lambda: get_settings().model_retention)
    #: Where deletions by retention are announced; None: the ``REDIS_URL`` of the settings,
    #: made when first needed.
    announcer: AliasAnnouncer | None = None


def _progress_reporter(jobs: JobStore, job_id: str, obey_cancel: bool = True) -> Any:
    """Write a new stage at once, and progress within a stage at a bounded rate. Before the
    commit point a report that says stop ends the training; after it nothing may (the version
    is being saved, and will be kept), so ``obey_cancel=False`` reports and carries on."""
    last_time, last_stage = 0.0, ""

    def report(progress: Progress) -> None:
        nonlocal last_time, last_stage
        now = time.monotonic()
        if progress.stage == last_stage and now - last_time < PROGRESS_INTERVAL_SECONDS:
            return
        last_time, last_stage = now, progress.stage
        stop = jobs.report_progress(job_id, progress.stage, progress.fraction, progress.rows_read)
        if stop and obey_cancel:
            raise TrainingCancelled("the job was cancelled")

    return report


def _slowed(report: Any, seconds: float) -> Any:
    """The test lever ``TEST_TRAINING_DELAY_SECONDS``: pause after each chunk's progress is
    reported (so a cancel is still obeyed at every chunk), making a training last as long as
    a test needs to watch, cancel, time out or kill it, however fast the machine is."""

    def report_then_pause(progress: Progress) -> None:
        report(progress)
        if progress.stage == "reading" and progress.rows_read > 0:
            time.sleep(seconds)

    return report_then_pause


def run_training_job(context: TrainingContext, job_id: str, parent_pid: int | None = None) -> None:
    """Run job ``job_id`` to a final status. Errors the user caused end the job as ``failed``
    with their message; anything else propagates (the task records it as an internal error)."""
    jobs = context.jobs
    job = jobs.start(job_id, context.worker_name)
    if job is None:
        log.info("job is not queued; nothing to do", extra={"job_id": job_id})
        return
    params: dict[str, Any] = job.params
    with JobLease(jobs, job_id, context.worker_name, parent_pid):
        try:
            _train_and_commit(context, job_id, params)
        except TrainingCancelled:
            jobs.finish(
                job_id,
                JobStatus.CANCELLED,
                error={"code": "cancelled", "message": "the job was cancelled while it ran"},
            )
            log.info("training cancelled", extra={"job_id": job_id})
        except DomainError as exc:
            jobs.finish(job_id, JobStatus.FAILED, error={"code": exc.code, "message": exc.message})
            log.info("training failed: %s", exc.message, extra={"job_id": job_id})


def _train_and_commit(context: TrainingContext, job_id: str, params: dict[str, Any]) -> None:
    jobs = context.jobs
    report = _progress_reporter(jobs, job_id)
    if context.chunk_delay_seconds > 0:
        report = _slowed(report, context.chunk_delay_seconds)
    datasets = context.datasets
    if params["dataset"] == datasets.default_name:
        report(Progress("preparing", 0.0, 0))
        dataset = datasets.ensure_default()  # the synthetic default is made on first use
    else:
        dataset = datasets.get(params["dataset"])
    # a job recorded before estimators could be chosen names none: the default it had then
    model_params = estimator_params(
        params.get("estimator", DEFAULT_ESTIMATOR), params.get("params", {})
    )
    split = SplitParams(test_size=params["test_size"], random_state=params["random_state"])
    run = train_model(
        datasets.training_source(dataset, context.chunk_rows),
        model_params,
        split,
        {"roc_auc": params["min_roc_auc"]},
        report,
        context.chunk_rows,
        dataset_name=dataset.name,
    )
    if not jobs.begin_commit(job_id):
        raise TrainingCancelled("the job was cancelled before its result was saved")
    promote = bool(params.get("promote", True))
    after_commit = _progress_reporter(jobs, job_id, obey_cancel=False)
    registered = register_run(context.registry, run, promote, on_progress=after_commit)
    metadata = registered.version.metadata
    result = {
        "version": registered.version.version,
        "estimator": model_params.estimator,
        "promoted": registered.promoted,
        "gate": metadata["gate"],
        "metrics": {k: v for k, v in metadata["metrics"].items() if k != "undefined"},
        "undefined_metrics": metadata["metrics"]["undefined"],
        "rows": metadata["rows"],
        "training_seconds": metadata["training_seconds"],
    }
    if not jobs.finish(job_id, JobStatus.SUCCEEDED, result=result):
        log.warning("job record changed after commit", extra={"job_id": job_id})
    log.info("training succeeded: %s", registered.version.version, extra={"job_id": job_id})
    _apply_retention(context, job_id)


def _apply_retention(context: TrainingContext, job_id: str) -> None:
    """After the result is recorded: housekeeping never turns a saved version into a failed
    job, and a retention that failed is done by the next training."""
    if context.model_retention <= 0:
        return
    try:
        if context.announcer is None:
            settings = get_settings()
            context.announcer = AliasAnnouncer(stores.redis_client(settings), settings.redis_prefix)
        registry_events.apply_retention(
            context.registry, context.announcer, context.model_retention
        )
    except Exception:
        log.warning(
            "retention failed; the next training applies it",
            exc_info=True,
            extra={"job_id": job_id},
        )
