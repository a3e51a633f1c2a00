"""The Celery app, configured from the shared settings and nothing else.

The API imports this module to send tasks by name; it never imports the tasks themselves.
"""

from __future__ import annotations

from celery import Celery

import worker.logs  # noqa: F401  (connects the setup_logging signal before any worker starts)
from shared.queues import PREDICT_TASK, PREDICTION_QUEUE, TRAIN_TASK, TRAINING_QUEUE
from shared.settings import Settings, get_settings

__all__ = [
    "PREDICTION_QUEUE",
    "PREDICT_TASK",
    "TRAINING_QUEUE",
    "TRAIN_TASK",
    "app",
    "create_celery",
]


def create_celery(settings: Settings) -> Celery:
    app = Celery("rvt", broker=settings.redis_url, include=["worker.tasks", "worker.lifecycle"])
    hard_limit = settings.training_time_limit_seconds + 60
    app.conf.update(
        # Job records in Redis are the source of truth and prediction replies go over pub/sub,
        # so Celery stores no results at all: nothing piles up in Redis.
        task_ignore_result=True,
        result_backend=None,
        task_serializer="json",
        accept_content=["json"],
        task_routes={
            TRAIN_TASK: {"queue": TRAINING_QUEUE},
            PREDICT_TASK: {"queue": PREDICTION_QUEUE},
        },
        task_default_queue=TRAINING_QUEUE,
        worker_prefetch_multiplier=1,
        # Trainings: acknowledged after they end, so a lost worker's message is redelivered
        # (after the visibility timeout, kept above the hard time limit so a long training
        # that is still running is never handed to a second worker); the job lease is what
        # reports a lost worker quickly.
        broker_transport_options={"visibility_timeout": hard_limit * 2},
        task_soft_time_limit=None,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=2,
        # Task events on, so Flower shows tasks live (`--profile monitoring`).
        worker_send_task_events=True,
        task_send_sent_event=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
    )
    app.conf.rvt_training_soft_limit = settings.training_time_limit_seconds
    app.conf.rvt_training_hard_limit = hard_limit
    return app


app = create_celery(get_settings())
