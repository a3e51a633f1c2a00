"""What both sides of the queue boundary agree on: queue and task names, and the Celery
configuration, as plain data, so the API and the workers each build their own Celery app
from it without importing one another (and this package imports no Celery)."""

from typing import Any, Final

from shared.settings import Settings

TRAINING_QUEUE: Final = "training"
PREDICTION_QUEUE: Final = "prediction"
QUEUES: Final = (TRAINING_QUEUE, PREDICTION_QUEUE)
TRAIN_TASK: Final = "rvt.train"
PREDICT_TASK: Final = "rvt.predict"

#: How Celery's Redis transport (kombu) stores a queue: a list named after the queue, plus one
#: list per non-zero priority step, named ``<queue>\x06\x16<step>`` (kombu's defaults).
_PRIORITY_SEPARATOR: Final = "\x06\x16"
_PRIORITY_STEPS: Final = (3, 6, 9)


def broker_lists(queue: str) -> list[str]:
    """The Redis lists holding a queue's waiting messages: their lengths sum to its depth."""
    return [queue, *(f"{queue}{_PRIORITY_SEPARATOR}{step}" for step in _PRIORITY_STEPS)]


def start_hint(queue: str) -> str:
    """How to start a worker for ``queue``, for error messages and readiness."""
    return f"start one with `celery -A worker worker -Q {queue}`"


def hard_time_limit(settings: Settings) -> int:
    """A training past its soft limit (``TRAINING_TIME_LIMIT_SECONDS``) gets a minute to end
    as ``failed`` before the worker kills it."""
    return settings.training_time_limit_seconds + 60


def celery_config(settings: Settings) -> dict[str, Any]:
    """``app.conf`` of every Celery app of the project, the API's (which only sends) and the
    workers'."""
    return {
        # Job records in Redis are the source of truth and prediction replies go over pub/sub,
        # so Celery stores no results at all: nothing piles up in Redis.
        "task_ignore_result": True,
        "result_backend": None,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_routes": {
            TRAIN_TASK: {"queue": TRAINING_QUEUE},
            PREDICT_TASK: {"queue": PREDICTION_QUEUE},
        },
        "task_default_queue": TRAINING_QUEUE,
        "worker_prefetch_multiplier": 1,
        # Trainings: acknowledged after they end, so a lost worker's message is redelivered
        # (after the visibility timeout, kept above the hard time limit so a long training
        # that is still running is never handed to a second worker); the job lease is what
        # reports a lost worker quickly.
        "broker_transport_options": {"visibility_timeout": hard_time_limit(settings) * 2},
        "task_soft_time_limit": None,
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": 2,
        # Task events on, so Flower shows tasks live (`--profile monitoring`).
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
    }
