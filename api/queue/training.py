"""Trainings go out as a Celery task named by string: the API never imports the training code.

Rare and not latency-bound, so they use Celery's own ``send_task`` on an app the API builds
from the shared configuration.
"""

from __future__ import annotations

import contextlib

from celery import Celery

from shared.queues import TRAIN_TASK, TRAINING_QUEUE, celery_config
from shared.settings import Settings

__all__ = ["CeleryTrainingQueue", "producer_app"]


def producer_app(settings: Settings) -> Celery:
    """A Celery app that only sends: no tasks, no worker signals."""
    app = Celery("rvt", broker=settings.redis_url, set_as_current=False)
    app.conf.update(celery_config(settings))
    return app


class CeleryTrainingQueue:
    def __init__(self, celery: Celery) -> None:
        self._celery = celery

    def submit(self, job_id: str) -> None:
        self._celery.send_task(
            TRAIN_TASK, args=[job_id], task_id=job_id, queue=TRAINING_QUEUE, retry=False
        )

    def revoke(self, job_id: str) -> None:
        # The task also checks the job record before it starts; revoking only saves it the trip.
        with contextlib.suppress(Exception):
            self._celery.control.revoke(job_id)
