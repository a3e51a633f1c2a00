"""Worker presence: which queues have a live consumer, for readiness.

Each worker announces itself every ``WORKER_ANNOUNCE_SECONDS`` in a sorted set per queue,
scored by Redis's own clock; a worker not heard from for ``WORKER_PRESENCE_TTL_SECONDS`` is
no longer counted. A broadcast ``inspect`` would be too slow for a probe. (Not to be confused
with a training job's lease, :meth:`shared.jobs.store.JobStore.renew_lease`: presence says a
worker process is up; a lease says a job is still being worked on.)
"""

from __future__ import annotations

from importlib import resources
from typing import Any, cast

import redis

from shared.jobs.records import text

__all__ = ["WorkerPresence"]


def _script(name: str) -> str:
    return resources.files(__package__).joinpath(f"{name}.lua").read_text()


class WorkerPresence:
    def __init__(self, redis: redis.Redis, prefix: str = "rvt", ttl_seconds: float = 10.0) -> None:
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        self._redis = redis
        self._prefix = prefix
        self._ttl = ttl_seconds
        self._announce = redis.register_script(_script("announce"))
        self._alive = redis.register_script(_script("alive"))

    def key(self, queue: str) -> str:
        return f"{self._prefix}:workers:{queue}"

    def announce(self, queue: str, worker: str) -> None:
        """Call more often than ``ttl_seconds``; the key itself expires when every worker stops."""
        self._announce(keys=[self.key(queue)], args=[worker, repr(self._ttl)])

    def leave(self, queue: str, worker: str) -> None:
        """A clean shutdown stops counting at once instead of after ``ttl_seconds``."""
        self._redis.zrem(self.key(queue), worker)

    def alive(self, queue: str) -> list[str]:
        names = cast(list[Any], self._alive(keys=[self.key(queue)], args=[repr(self._ttl)]))
        return sorted(text(name) for name in names)
