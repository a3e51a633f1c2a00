"""The lease a running training keeps on its job: renewed from a thread while it trains.

A worker that dies stops renewing, and the job is read as lost within ``JOB_LEASE_SECONDS``
(see :mod:`shared.jobs.store`), not when the broker redelivers its message an hour later.
"""

from __future__ import annotations

import logging
import os
import threading

from shared.jobs.store import JobStore

__all__ = ["JobLease"]

log = logging.getLogger(__name__)


class JobLease:
    """Renews the job's lease from a thread while the training runs.

    It also watches the parent process: a pool child whose worker was killed would otherwise
    go on training as an orphan, renewing a lease nobody can act on.
    """

    def __init__(self, jobs: JobStore, job_id: str, worker: str, parent_pid: int | None) -> None:
        self._jobs, self._job_id, self._worker = jobs, job_id, worker
        self._parent_pid = parent_pid
        self._stop = threading.Event()
        interval = max(min(jobs.lease_seconds / 3, 5.0), 0.05)
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)

    def __enter__(self) -> JobLease:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            if self._parent_pid is not None and os.getppid() != self._parent_pid:
                log.error(
                    "worker process lost its parent; stopping", extra={"job_id": self._job_id}
                )
                os._exit(1)
            try:
                self._jobs.renew_lease(self._job_id, self._worker)
            except Exception:  # Redis blips: the lease is long enough to survive a few
                log.warning("lease renewal failed", extra={"job_id": self._job_id}, exc_info=True)
