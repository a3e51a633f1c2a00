"""The workers' Celery app, configured from the shared settings and nothing else.

``celery -A worker worker -Q training`` finds it through :mod:`worker`. The API builds its own
app from the same configuration (:func:`shared.queues.celery_config`) and never imports this.
"""

from __future__ import annotations

from celery import Celery

import worker.logs  # noqa: F401  (connects the setup_logging signal before any worker starts)
from shared.queues import celery_config, hard_time_limit
from shared.settings import Settings, get_settings

__all__ = ["app", "create_celery"]


def create_celery(settings: Settings) -> Celery:
    app = Celery("rvt", broker=settings.redis_url, include=["worker.tasks", "worker.lifecycle"])
    app.conf.update(celery_config(settings))
    # Reconnect to a Redis that came back within a second, and never stop trying: the API
    # sends work as soon as Redis answers (see worker.consumer).
    app.conf.worker_consumer = "worker.consumer:Consumer"
    app.conf.broker_connection_max_retries = None
    app.conf.rvt_training_soft_limit = settings.training_time_limit_seconds
    app.conf.rvt_training_hard_limit = hard_time_limit(settings)
    return app


app = create_celery(get_settings())
