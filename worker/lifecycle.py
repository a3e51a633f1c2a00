"""Worker process lifecycle: which queues this worker serves, its presence (for readiness), and
the announcement of a promotion made by a training.

The queues come from the worker's own ``-Q`` option, read in the main process before the pool
forks, so pool children know their role without any extra configuration.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery.signals import celeryd_init, task_postrun, worker_ready, worker_shutdown

from shared.jobs.records import JobStatus
from shared.queues import TRAIN_TASK
from shared.settings import get_settings
from worker import resources

log = logging.getLogger(__name__)

_queues: set[str] = set()
_hostname: str = ""
_stop_announcing = threading.Event()


def consumed_queues() -> set[str]:
    return set(_queues)


def queues_from_options(options: Any) -> set[str]:
    """The queues named by the worker's ``-Q`` option (empty when it has none)."""
    queues = (options or {}).get("queues") or []
    if isinstance(queues, str):
        queues = queues.split(",")
    return {q.strip() for q in queues if q.strip()}


@celeryd_init.connect
def _remember_queues(sender: str, instance: Any, conf: Any, options: Any = None, **_: Any) -> None:
    global _hostname
    _hostname = str(sender)
    _queues.update(queues_from_options(options))
    if not _queues:
        _queues.update(q.name for q in instance.app.amqp.queues.values())


def _announce_forever(interval: float) -> None:
    presence = resources.worker_presence()
    while True:
        for queue in sorted(_queues):
            try:
                presence.announce(queue, _hostname)
            except Exception:  # Redis may be down; readiness will say so
                log.warning("presence announcement failed for queue %s", queue, exc_info=True)
        if _stop_announcing.wait(interval):
            return


@worker_ready.connect
def _start_announcing(sender: Any = None, **_: Any) -> None:
    interval = get_settings().worker_announce_seconds
    threading.Thread(
        target=_announce_forever, args=(interval,), name="presence", daemon=True
    ).start()
    log.info("worker ready", extra={"queues": sorted(_queues), "worker": _hostname})


@worker_shutdown.connect
def _leave(**_: Any) -> None:
    _stop_announcing.set()
    try:
        presence = resources.worker_presence()
        for queue in _queues:
            presence.leave(queue, _hostname)
    except Exception:
        log.warning("could not withdraw presence at shutdown", exc_info=True)


@task_postrun.connect
def _announce_a_promotion(sender: Any = None, args: Any = None, **_: Any) -> None:
    """A training whose job promoted its version announces it, as the API and ``rvt models``
    do after theirs, so that every prediction worker serves it within a second. (The job's
    record says whether it promoted: the training itself changes the alias through the
    registry, which knows nothing of Redis.) Runs in the process that ran the task."""
    if getattr(sender, "name", None) != TRAIN_TASK or not args:
        return
    try:
        job = resources.training_context().jobs.get(str(args[0]))
    except Exception as exc:  # Redis down: the announcement could not be sent either
        log.warning("could not read the finished job to announce its promotion: %s", exc)
        return
    result = job.result or {}
    if job.status is JobStatus.SUCCEEDED and result.get("promoted"):
        resources.alias_announcer().announce(result.get("version"), "promote")
