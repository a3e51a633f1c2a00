"""Worker process lifecycle: which queues this worker serves, and its readiness heartbeats.

The queues come from the worker's own ``-Q`` option, read in the main process before the pool
forks, so pool children know their role without any extra configuration.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery.signals import celeryd_init, worker_ready, worker_shutdown

from shared.jobs import WorkerHeartbeats
from shared.settings import get_settings

log = logging.getLogger(__name__)

_queues: set[str] = set()
_hostname: str = ""
_stop_beating = threading.Event()


def consumed_queues() -> set[str]:
    return set(_queues)


@celeryd_init.connect
def _remember_queues(sender: str, instance: Any, conf: Any, options: Any = None, **_: Any) -> None:
    global _hostname
    _hostname = str(sender)
    queues = (options or {}).get("queues") or []
    if isinstance(queues, str):
        queues = queues.split(",")
    _queues.update(q.strip() for q in queues if q.strip())
    if not _queues:
        _queues.update(q.name for q in instance.app.amqp.queues.values())


def _heartbeats() -> WorkerHeartbeats:
    from worker.tasks import redis_client

    settings = get_settings()
    return WorkerHeartbeats(
        redis_client(),
        prefix=settings.redis_prefix,
        ttl_seconds=settings.worker_heartbeat_ttl_seconds,
    )


def _beat_forever(interval: float) -> None:
    beats = _heartbeats()
    while True:
        for queue in sorted(_queues):
            try:
                beats.beat(queue, _hostname)
            except Exception:  # Redis may be down; readiness will say so
                log.warning("heartbeat failed for queue %s", queue, exc_info=True)
        if _stop_beating.wait(interval):
            return


@worker_ready.connect
def _start_heartbeats(sender: Any = None, **_: Any) -> None:
    interval = get_settings().worker_heartbeat_seconds
    threading.Thread(target=_beat_forever, args=(interval,), name="heartbeats", daemon=True).start()
    log.info("worker ready", extra={"queues": sorted(_queues), "worker": _hostname})


@worker_shutdown.connect
def _leave(**_: Any) -> None:
    _stop_beating.set()
    try:
        beats = _heartbeats()
        for queue in _queues:
            beats.leave(queue, _hostname)
    except Exception:
        log.warning("could not remove heartbeats at shutdown", exc_info=True)
