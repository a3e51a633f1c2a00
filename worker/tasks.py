"""The tasks: thin. They take ids and codes, call the domain, and report.

Per-process resources (Redis client, job store, registry, the serving model) are built once
per process, lazily, and cached; ``worker_process_init`` only starts the model follower
thread, which loads the model in the background (that hook has a 4-second limit).
"""

from __future__ import annotations

import json
import logging
import os
import socket
from functools import lru_cache
from typing import Any

import redis
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_process_init
from threadpoolctl import threadpool_limits

from shared.datasets import DatasetStore
from shared.errors import DomainError
from shared.jobs import JobStatus, JobStore
from shared.registry import ModelRegistry
from shared.scoring import ModelHolder, decode_codes
from shared.settings import get_settings
from shared.training_jobs import TrainingContext, run_training_job
from worker.celery_app import PREDICT_TASK, PREDICTION_QUEUE, TRAIN_TASK, TRAINING_QUEUE, app
from worker.lifecycle import consumed_queues

log = logging.getLogger(__name__)

#: Training yields the CPU to predictions (2 cores are shared with the serving path).
TRAINING_NICENESS = 10


@lru_cache(maxsize=1)
def redis_client() -> redis.Redis:
    settings = get_settings()
    return redis.Redis.from_url(
        settings.redis_url, socket_timeout=5, socket_connect_timeout=2, health_check_interval=30
    )


def yield_cpu_to_predictions() -> None:
    """A training process runs at a lower CPU priority with one numeric-library thread, so
    that on a small machine predictions are never slowed by more than a little."""
    try:
        os.nice(TRAINING_NICENESS)
    except OSError:  # not permitted: run at normal priority rather than not at all
        log.warning("could not lower the training process's CPU priority")
    threadpool_limits(1)


@lru_cache(maxsize=1)
def training_context() -> TrainingContext:
    settings = get_settings()
    return TrainingContext(
        jobs=JobStore(
            redis_client(),
            prefix=settings.redis_prefix,
            ttl_seconds=settings.job_ttl_seconds,
            lease_seconds=settings.job_lease_seconds,
        ),
        registry=ModelRegistry(settings.models_dir),
        datasets=DatasetStore(
            settings.data_dir, settings.default_dataset, settings.default_dataset_rows
        ),
        chunk_rows=settings.chunk_rows,
        worker_name=f"{socket.gethostname()}:{os.getpid()}",
    )


@lru_cache(maxsize=1)
def model_holder() -> ModelHolder:
    settings = get_settings()
    holder = ModelHolder(ModelRegistry(settings.models_dir), settings.model_poll_seconds)
    holder.start()
    return holder


#: True in a prefork pool child, whose parent is the worker's main process.
IN_POOL_CHILD = False


@worker_process_init.connect
def _start_following_the_model(**_: Any) -> None:
    global IN_POOL_CHILD
    IN_POOL_CHILD = True
    queues = consumed_queues()
    if TRAINING_QUEUE in queues:
        yield_cpu_to_predictions()
    # Only prediction workers hold a model; a training worker never touches the holder.
    if PREDICTION_QUEUE in queues:
        model_holder()


@app.task(
    name=TRAIN_TASK,
    acks_late=True,
    reject_on_worker_lost=False,
    soft_time_limit=app.conf.rvt_training_soft_limit,
    time_limit=app.conf.rvt_training_hard_limit,
)
def train(job_id: str) -> None:
    context = training_context()
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
    """Score every request of a batch with one model and publish the replies at once."""
    replies: list[dict[str, Any]] = []
    try:
        model = model_holder().current()
    except DomainError as exc:
        error = {"code": exc.code, "message": exc.message}
        replies = [{"id": request_id, "error": error} for request_id, _ in batch]
    else:
        for request_id, encoded in batch:
            try:
                probabilities = model.scorer.predict_proba(decode_codes(encoded))
            except ValueError as exc:
                replies.append(
                    {"id": request_id, "error": {"code": "bad_request", "message": str(exc)}}
                )
                continue
            replies.append(
                {
                    "id": request_id,
                    "version": model.version,
                    "probabilities": probabilities.tolist(),
                }
            )
    redis_client().publish(reply_channel, json.dumps({"replies": replies}))
