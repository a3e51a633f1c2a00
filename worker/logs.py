"""Worker logging: the same lines as the API's (:mod:`shared.logging_setup`), installed through
Celery's ``setup_logging`` signal so that Celery installs no handlers of its own.

Celery's per-task lines ("Task rvt.train[<id>] received/succeeded") pass their fields as a
dict in ``record.data``. :class:`CeleryTaskLines` uses it: a training task's id is its job id
(the API sends it so), so those lines get ``job_id`` like every other line about the job; and
the per-batch INFO lines of prediction tasks are dropped, since a busy prediction worker would
otherwise write two lines per batch (the API's request metrics count them instead).
"""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import celeryd_init, setup_logging

from shared.logging_setup import configure_logging
from shared.queues import PREDICT_TASK, TRAIN_TASK
from shared.settings import get_settings


class CeleryTaskLines(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        data = record.__dict__.get("data")
        if not (isinstance(data, dict) and record.name.startswith("celery.")):
            return True
        del record.__dict__["data"]  # the message already says it (and args can be long)
        name = data.get("name")
        if name == PREDICT_TASK and record.levelno < logging.WARNING:
            return False
        if name == TRAIN_TASK and not record.__dict__.get("job_id"):
            record.job_id = data.get("id")
        return True


@celeryd_init.connect
@setup_logging.connect
def _configure(**_: Any) -> None:
    """LOG_LEVEL, not ``--loglevel``: one setting for every process. Also on ``celeryd_init``,
    which comes first, so that the worker's start-up warnings are lines like the rest."""
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format, filters=[CeleryTaskLines()])
