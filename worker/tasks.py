"""The tasks: thin. They take ids and codes, call the domain, and report.

Per-process resources live in :mod:`worker.resources`; ``worker_process_init`` only starts the
model follower thread, which loads the model in the background (that hook has a 4-second
limit).
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any

import orjson
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import celeryd_init, worker_process_init
from threadpoolctl import threadpool_limits

from shared.jobs.records import JobStatus
from shared.jobs.runner import run_training_job
from shared.logging_setup import job_id_var
from shared.model.scoring import score_by_version
from shared.queues import PREDICT_TASK, PREDICTION_QUEUE, TRAIN_TASK, TRAINING_QUEUE
from worker import resources
from worker.celery_app import app
from worker.lifecycle import consumed_queues, queues_from_options

log = logging.getLogger(__name__)

#: Training yields the CPU to predictions (2 cores are shared with the serving path).
TRAINING_NICENESS = 10


def yield_cpu_to_predictions() -> None:
    """A training process runs at a lower CPU priority with one numeric-library thread, so
    that on a small machine predictions are never slowed by more than a little.

    With autogroup scheduling (``/proc/sys/kernel/sched_autogroup_enabled``, on by default
    in many kernels) the CPU is shared first between sessions, and a process's nice value
    only orders it within its own session; a worker started in a session of its own (as
    ``rvt serve`` and the tests start it) would compete with the API as an equal. So the
    session's autogroup is lowered to the same niceness."""
    try:
        os.nice(TRAINING_NICENESS)
    except OSError:  # not permitted: run at normal priority rather than not at all
        log.warning("could not lower the training process's CPU priority")
    with contextlib.suppress(OSError):  # no autogroup scheduling here: nothing to lower
        Path("/proc/self/autogroup").write_text(f"{TRAINING_NICENESS}\n")
    threadpool_limits(1)


#: True in a prefork pool child, whose parent is the worker's main process.
IN_POOL_CHILD = False
_MAIN_PID = os.getpid()


#: Celery's per-task INFO lines ("received", "succeeded in"): two log records per task, a
#: measurable share of a prediction's cost. Prediction-only workers log these at WARNING.
_PER_TASK_LOGGERS = ("celery.app.trace", "celery.worker.strategy", "celery.worker.request")


@celeryd_init.connect
def _lean_prediction_worker(conf: Any = None, options: Any = None, **_: Any) -> None:
    """A worker that serves only predictions sends no task events: three event messages per
    task (received, started, succeeded) would cost more than the prediction itself."""
    if conf is not None and queues_from_options(options) == {PREDICTION_QUEUE}:
        conf.worker_send_task_events = False
        # Prediction tasks are acknowledged on receipt: kombu's ack emulation (an "unacked"
        # hash and index in Redis, written and cleared per message) would only cost two Redis
        # round trips per task.
        conf.broker_transport_options = {**conf.broker_transport_options, "ack_emulation": False}


@worker_process_init.connect
def _start_following_the_model(**_: Any) -> None:
    """Runs in each prefork pool child, and once in the main process of a ``--pool solo``
    worker (the prediction workers' pool: no pipe to a child per task)."""
    global IN_POOL_CHILD
    queues = consumed_queues()
    IN_POOL_CHILD = os.getpid() != _MAIN_PID
    if TRAINING_QUEUE in queues:
        yield_cpu_to_predictions()
    # Only prediction workers hold a model; a training worker never touches the holder.
    if PREDICTION_QUEUE in queues:
        if TRAINING_QUEUE not in queues:
            for name in _PER_TASK_LOGGERS:
                logging.getLogger(name).setLevel(logging.WARNING)
        resources.production_model()
        resources.freeze_heap()


@app.task(
    name=TRAIN_TASK,
    acks_late=True,
    reject_on_worker_lost=False,
    soft_time_limit=app.conf.rvt_training_soft_limit,
    time_limit=app.conf.rvt_training_hard_limit,
)
def train(job_id: str) -> None:
    """Every line logged while it runs carries ``job_id`` (see :mod:`shared.logging_setup`)."""
    token = job_id_var.set(job_id)
    try:
        _train(job_id)
    finally:
        job_id_var.reset(token)


def _train(job_id: str) -> None:
    context = resources.training_context()
    parent = os.getppid() if IN_POOL_CHILD else None
    try:
        run_training_job(context, job_id, parent_pid=parent)
    except SoftTimeLimitExceeded:
        limit = app.conf.rvt_training_soft_limit
        context.jobs.finish(
            job_id,
            JobStatus.FAILED,
            error={"code": "time_limit", "message": f"the training ran over its {limit} s limit"},
        )
    except Exception:
        log.exception("training crashed", extra={"job_id": job_id})
        context.jobs.finish(
            job_id,
            JobStatus.FAILED,
            error={"code": "internal_error", "message": "the training failed unexpectedly"},
        )


@app.task(name=PREDICT_TASK, ignore_result=True)
def predict(reply_channel: str, batch: list[list[str]]) -> None:
    """Score every request of a batch (with the production model, or with the version a
    request names) and publish the replies at once."""
    replies = score_by_version(batch, resources.scorer_for)
    resources.redis_client().publish(reply_channel, orjson.dumps({"replies": replies}))
