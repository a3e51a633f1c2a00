"""The workers' broker consumer: Celery's own, reconnecting to a Redis that came back within
a second.

Celery's consumer retries a lost broker connection on kombu's default schedule, after 2 s,
then 4, 6, ... up to 30 s between attempts: a worker whose Redis was down for 6.5 s came back
5.5 s after Redis did (measured by ``tests/integration/test_process_faults.py``), and after a
longer outage up to 30 s later, while the API, which reconnects at once, was already sending
it work. Here the attempts are every 0.25 s, then 0.5 s, then every second however long the
outage lasts (a refused connection costs next to nothing), and the worker retries for as long
as it runs (``broker_connection_max_retries = None``, set in :mod:`worker.celery_app`) instead
of giving up after 100 attempts, which at that pace would be after less than two minutes.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer

__all__ = ["RECONNECT_INTERVALS", "Consumer"]

#: kombu's ``ensure_connection`` schedule: first wait, step, longest wait (seconds).
RECONNECT_INTERVALS = {"interval_start": 0.25, "interval_step": 0.25, "interval_max": 1.0}


class Consumer(CeleryConsumer):
    """Celery's consumer with a reconnection schedule of seconds, not tens of seconds."""

    def ensure_connected(self, conn: Any) -> Any:
        # Celery calls conn.ensure_connection(errback, max_retries, callback=...) and leaves
        # the intervals at kombu's defaults: supply ours (every other argument unchanged).
        conn.ensure_connection = partial(conn.ensure_connection, **RECONNECT_INTERVALS)
        return super().ensure_connected(conn)
