"""Job records in Redis: the project's own source of truth for training jobs.

Celery's task state cannot be it: Celery answers PENDING for any id, including ids it never saw,
and forgets results on its own schedule. So the API writes a record at submission and every
later change is a compare-and-set done by a Lua script, which Redis runs atomically. That is what
makes a cancel and a commit never both win, and two submissions with one idempotency key yield
one job.

Keys (``P`` is the prefix; every key carries an expiry, so nothing grows without bound)::

    P:job:<id>          hash, the record; expiry refreshed to ``ttl_seconds`` on every write
    P:job:<id>:lease    string (the worker name) with a TTL of ``lease_seconds`` while running
    P:jobs              sorted set of ids by submission time, trimmed to ``index_limit`` newest
    P:idem:<sha256>     hash {job_id, fingerprint} of an idempotency key, ``ttl_seconds``
    P:metrics:jobs      hash ``<kind>|<status>`` -> jobs that reached that final status
    P:metrics:job_seconds  hash ``<kind>|<status>|<i>``/``|sum``/``|count``: a histogram of the
                        time from start to final status (cumulative bucket ``i`` of
                        :data:`DURATION_BUCKETS`), for jobs that ran in a worker

The two metrics hashes are written by the same scripts that make a job final, atomically with
the transition, so each job is counted exactly once, whichever process ended it (a worker, the
API cancelling a queued job, or anyone settling a lost one); the API reads them at scrape time
(:meth:`JobStore.metrics`, :mod:`shared.jobs.metrics`). Their fields are bounded (kinds x statuses x buckets) and their
expiry is refreshed to ``ttl_seconds`` on every write.

Record fields that are ``None`` are absent from the hash; dict fields are JSON. A running job
whose lease has expired is settled (to failed ``worker_lost``, or cancelled if a cancel was
asked) by whichever script touches it next, so what a job shows never depends on whether anyone
happened to look at it while its worker was gone. The scripts are the ``.lua`` files beside this
module (:mod:`shared.jobs.scripts`). They build key names from the prefix only for the
idempotency lookup; that is fine on a single Redis (not Redis Cluster).

Redis errors are not caught here: callers (the API) turn them into 503.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

import redis
from redis.commands.core import Script

from shared.errors import IdempotencyConflictError, JobConflictError, JobNotFoundError
from shared.jobs import scripts
from shared.jobs.metrics import DURATION_BUCKETS, DurationHistogram, JobMetrics
from shared.jobs.records import (
    CANCELLED_BEFORE_START,
    CANCELLED_WHILE_RUNNING,
    CANCELLED_WORKER_GONE,
    FAILED_DEFAULT,
    FINAL_STATUSES,
    JOB_ID_PATTERN,
    Job,
    JobStatus,
    check_error,
    text,
    worker_lost_error,
)

__all__ = ["MAX_LIST_LIMIT", "JobStore"]

MAX_LIST_LIMIT = 500
_ID_RE = re.compile(JOB_ID_PATTERN)
_READ_CHUNK = 100


def _now() -> datetime:
    return datetime.now(UTC)


def _dump(value: Any) -> str:
    """Canonical JSON, so equal bodies give equal fingerprints whatever their key order."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


class JobStore:
    """Job records and their transitions; safe to share between threads (one client pool)."""

    def __init__(
        self,
        redis: redis.Redis,
        prefix: str = "rvt",
        ttl_seconds: int = 7 * 86400,
        lease_seconds: float = 15.0,
        index_limit: int = 1000,
    ) -> None:
        if ttl_seconds < 1 or lease_seconds <= 0 or index_limit < 1:
            raise ValueError("ttl_seconds, lease_seconds and index_limit must be positive")
        self._redis = redis
        self._prefix = prefix
        self._ttl = int(ttl_seconds)
        self._lease_seconds = lease_seconds
        self._lease_ms = max(1, round(lease_seconds * 1000))
        self._index_limit = index_limit
        self._index = f"{prefix}:jobs"
        self._metrics_jobs = f"{prefix}:metrics:jobs"
        self._metrics_seconds = f"{prefix}:metrics:job_seconds"
        self._lost_json = _dump(worker_lost_error(lease_seconds))
        self._worker_gone_json = _dump(CANCELLED_WORKER_GONE)
        self._read = redis.register_script(scripts.job_script("read"))
        self._create = redis.register_script(scripts.job_script("create"))
        self._start = redis.register_script(scripts.job_script("start"))
        self._renew_lease = redis.register_script(scripts.job_script("renew_lease"))
        self._progress = redis.register_script(scripts.job_script("progress"))
        self._cancel = redis.register_script(scripts.job_script("cancel"))
        self._fail_queued = redis.register_script(scripts.job_script("fail_queued"))
        self._begin_commit = redis.register_script(scripts.job_script("begin_commit"))
        self._finish = redis.register_script(scripts.job_script("finish"))

    # -- keys and script plumbing -------------------------------------------------------------

    @property
    def lease_seconds(self) -> float:
        """A worker must renew its lease well within this (it renews every third of it)."""
        return self._lease_seconds

    def job_key(self, job_id: str) -> str:
        return f"{self._prefix}:job:{job_id}"

    def lease_key(self, job_id: str) -> str:
        return f"{self._prefix}:job:{job_id}:lease"

    def _idem_key(self, idempotency_key: str) -> str:
        """Hashed, so any client string is a safe, bounded key name."""
        digest = hashlib.sha256(idempotency_key.encode()).hexdigest()
        return f"{self._prefix}:idem:{digest}"

    def _call(
        self,
        script: Script,
        job_id: str,
        *args: str | int,
        now: datetime | None = None,
        client: redis.client.Pipeline | None = None,
        extra_keys: Sequence[str] = (),
    ) -> Any:
        keys = [
            self.job_key(job_id),
            self.lease_key(job_id),
            self._index,
            self._metrics_jobs,
            self._metrics_seconds,
            *extra_keys,
        ]
        head: list[str | int] = [
            (now or _now()).isoformat(),
            self._ttl,
            self._lost_json,
            self._worker_gone_json,
        ]
        return script(keys=keys, args=[*head, *args], client=client)

    # -- API ------------------------------------------------------------------------------------

    def create(
        self, kind: str, params: dict[str, Any], idempotency_key: str | None = None
    ) -> tuple[Job, bool]:
        """Write a queued job; with a key, a retried submission returns the first job instead."""
        params_json = _dump(params)
        fingerprint = hashlib.sha256(_dump({"kind": kind, "params": params}).encode()).hexdigest()
        job_id = uuid.uuid4().hex
        now = _now()
        extra = [self._idem_key(idempotency_key)] if idempotency_key is not None else []
        reply = self._call(
            self._create,
            job_id,
            job_id,
            kind,
            params_json,
            repr(now.timestamp()),
            self._index_limit,
            fingerprint,
            self._prefix,
            now=now,
            extra_keys=extra,
        )
        outcome = text(reply[0])
        if outcome == "created":
            return Job.from_hash(reply[1]), True
        existing_id = text(reply[1])
        if outcome == "conflict":
            raise IdempotencyConflictError(
                "this idempotency key was already used with a different request body "
                f"(job {existing_id}); use a new key for a different request",
                details={"job_id": existing_id},
            )
        return self.get(existing_id), False

    def get(self, job_id: str) -> Job:
        flat = self._call(self._read, job_id) if _ID_RE.match(job_id) else None
        if not flat:
            raise JobNotFoundError(
                f"job {job_id!r} was not found (unknown id, or its record expired)",
                details={"job_id": job_id},
            )
        return Job.from_hash(flat)

    def list(self, status: JobStatus | None = None, limit: int = 50) -> list[Job]:
        """Newest first. Reads a snapshot of the (bounded) index, so concurrent submissions
        cannot shift pages under us, and drops ids whose record has expired."""
        limit = min(max(limit, 0), MAX_LIST_LIMIT)
        wanted = JobStatus(status) if status is not None else None
        if limit == 0:
            return []
        ids = [text(i) for i in cast(list[Any], self._redis.zrevrange(self._index, 0, -1))]
        jobs: list[Job] = []
        for start in range(0, len(ids), _READ_CHUNK):
            chunk = ids[start : start + _READ_CHUNK]
            pipe = self._redis.pipeline(transaction=False)
            now = _now()
            for job_id in chunk:
                self._call(self._read, job_id, now=now, client=pipe)
            replies = pipe.execute()
            gone = [job_id for job_id, flat in zip(chunk, replies, strict=True) if not flat]
            if gone:
                self._redis.zrem(self._index, *gone)
            for flat in replies:
                if not flat:
                    continue
                job = Job.from_hash(flat)
                if wanted is None or job.status == wanted:
                    jobs.append(job)
                    if len(jobs) == limit:
                        return jobs
        return jobs

    def start(self, job_id: str, worker: str) -> Job | None:
        """Claim a queued job. None means someone else owns its fate (cancelled, running
        elsewhere, finished, or no such record) and the task must do nothing, which makes a
        redelivered Celery message harmless."""
        if not _ID_RE.match(job_id):
            return None
        flat = self._call(self._start, job_id, worker, self._lease_ms)
        return Job.from_hash(flat) if flat else None

    def renew_lease(self, job_id: str, worker: str) -> bool:
        """False tells the worker it no longer owns the job (lease lapsed, finished, or taken)."""
        if not _ID_RE.match(job_id):
            return False
        return bool(self._call(self._renew_lease, job_id, worker, self._lease_ms))

    def report_progress(self, job_id: str, stage: str, fraction: float, rows_read: int) -> bool:
        """Returns True when the worker should stop: a cancel was requested, or the job is no
        longer running (settled as lost, finished, or unknown), so its work would be discarded."""
        if not _ID_RE.match(job_id):
            return True
        fraction = 0.0 if math.isnan(fraction) else min(1.0, max(0.0, float(fraction)))
        return bool(
            self._call(self._progress, job_id, stage, repr(fraction), max(0, int(rows_read)))
        )

    def request_cancel(self, job_id: str) -> Job:
        """A queued job is cancelled at once (its Celery message, when consumed, finds it not
        queued and does nothing); a running one is flagged and stays running until its worker
        notices and calls :meth:`finish`. Asking again while flagged is not an error."""
        reply = None
        if _ID_RE.match(job_id):
            reply = self._call(self._cancel, job_id, _dump(CANCELLED_BEFORE_START))
        if not reply:
            raise JobNotFoundError(
                f"job {job_id!r} was not found (unknown id, or its record expired)",
                details={"job_id": job_id},
            )
        outcome, job = text(reply[0]), Job.from_hash(reply[1])
        if outcome == "committing":
            raise JobConflictError(
                f"job {job_id} cannot be cancelled: it is past its commit point "
                "(its result is being saved)",
                details={"job_id": job_id, "status": job.status.value},
            )
        if outcome == "final":
            raise JobConflictError(
                f"job {job_id} cannot be cancelled: it already {job.status.value}",
                details={"job_id": job_id, "status": job.status.value},
            )
        return job

    def fail_queued(
        self, job_id: str, error: dict[str, Any], idempotency_key: str | None = None
    ) -> bool:
        """A job whose message never reached the broker would stay queued forever: end it as
        failed, and forget its idempotency key so that retrying with the same key submits
        afresh. False if the job was no longer queued."""
        check_error(error)
        if not _ID_RE.match(job_id):
            return False
        extra = [self._idem_key(idempotency_key)] if idempotency_key is not None else []
        return bool(self._call(self._fail_queued, job_id, _dump(error), extra_keys=extra))

    def begin_commit(self, job_id: str) -> bool:
        """The single point where a cancel and a save race: True means the worker may save and
        later cancels are refused; False means it must not save (cancel asked, or not running)."""
        if not _ID_RE.match(job_id):
            return False
        return bool(self._call(self._begin_commit, job_id))

    def finish(
        self,
        job_id: str,
        status: JobStatus,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
    ) -> bool:
        """Close a running job. SUCCEEDED is refused (False) once a cancel has been accepted, so
        an accepted cancel is never overridden; FAILED/CANCELLED without an error get a default
        one, so every unsuccessful job says why."""
        status = JobStatus(status)
        if status not in FINAL_STATUSES:
            raise ValueError(f"finish needs a final status, not {status.value!r}")
        if status is JobStatus.SUCCEEDED and error is not None:
            raise ValueError("a succeeded job carries no error")
        if status is JobStatus.FAILED and error is None:
            error = FAILED_DEFAULT
        if status is JobStatus.CANCELLED and error is None:
            error = CANCELLED_WHILE_RUNNING
        if error is not None:
            check_error(error)
        if not _ID_RE.match(job_id):
            return False
        result_json = _dump(result) if result is not None else ""
        error_json = _dump(error) if error is not None else ""
        return bool(self._call(self._finish, job_id, status.value, result_json, error_json))

    def metrics(self) -> JobMetrics:
        """The job counters and duration histograms every process has recorded (one round
        trip). Fields that no job has reached yet are absent from Redis and read as zero."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.hgetall(self._metrics_jobs)
        pipe.hgetall(self._metrics_seconds)
        raw_jobs, raw_seconds = pipe.execute()
        finished: dict[tuple[str, str], int] = {}
        for field, value in raw_jobs.items():
            kind, _, status = text(field).rpartition("|")
            finished[(kind, status)] = int(text(value))
        parts: dict[tuple[str, str], dict[str, str]] = {}
        for field, value in raw_seconds.items():
            kind, status, slot = text(field).rsplit("|", 2)
            parts.setdefault((kind, status), {})[slot] = text(value)
        durations = {
            key: DurationHistogram(
                buckets=tuple(
                    (bound, int(slots.get(str(i), "0")))
                    for i, bound in enumerate(DURATION_BUCKETS, start=1)
                ),
                sum=float(slots.get("sum", "0")),
                count=int(slots.get("count", "0")),
            )
            for key, slots in parts.items()
        }
        return JobMetrics(finished=finished, durations=durations)
