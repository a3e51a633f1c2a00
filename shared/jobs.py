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
    P:workers:<queue>   sorted set of worker names by last heartbeat (:class:`WorkerHeartbeats`)
    P:metrics:jobs      hash ``<kind>|<status>`` -> jobs that reached that final status
    P:metrics:job_seconds  hash ``<kind>|<status>|<i>``/``|sum``/``|count``: a histogram of the
                        time from start to final status (cumulative bucket ``i`` of
                        :data:`DURATION_BUCKETS`), for jobs that ran in a worker

The two metrics hashes are written by the same scripts that make a job final, atomically with
the transition, so each job is counted exactly once, whichever process ended it (a worker, the
API cancelling a queued job, or anyone settling a lost one); the API reads them at scrape time
(:meth:`JobStore.metrics`). Their fields are bounded (kinds x statuses x buckets) and their
expiry is refreshed to ``ttl_seconds`` on every write.

Record fields that are ``None`` are absent from the hash; dict fields are JSON. A running job
whose lease has expired is settled (to failed ``worker_lost``, or cancelled if a cancel was
asked) by whichever script touches it next, so what a job shows never depends on whether anyone
happened to look at it while its worker was gone. Scripts build key names from the prefix only
for the idempotency lookup; that is fine on a single Redis (not Redis Cluster).

Redis errors are not caught here: callers (the API) turn them into 503.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, cast

import redis
from redis.commands.core import Script

from shared.errors import IdempotencyConflictError, JobConflictError, JobNotFoundError

__all__ = [
    "DURATION_BUCKETS",
    "FINAL_STATUSES",
    "MAX_LIST_LIMIT",
    "DurationHistogram",
    "Job",
    "JobMetrics",
    "JobStatus",
    "JobStore",
    "WorkerHeartbeats",
]

MAX_LIST_LIMIT = 500
#: Upper bounds (seconds) of the job duration histogram: trainings take seconds to an hour.
DURATION_BUCKETS: tuple[float, ...] = (1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
_ID_RE = re.compile(r"^[0-9a-f]{32}$")
_READ_CHUNK = 100


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL_STATUSES: frozenset[JobStatus] = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}
)

CANCELLED_BEFORE_START: dict[str, str] = {
    "code": "cancelled",
    "message": "the job was cancelled before it started",
}
CANCELLED_WHILE_RUNNING: dict[str, str] = {
    "code": "cancelled",
    "message": "the job was cancelled while running",
}
CANCELLED_WORKER_GONE: dict[str, str] = {
    "code": "cancelled",
    "message": "the job was cancelled; its worker stopped before confirming",
}
FAILED_DEFAULT: dict[str, str] = {"code": "failed", "message": "the job failed"}


@dataclass
class Job:
    job_id: str
    kind: str
    status: JobStatus
    progress: float
    stage: str | None
    rows_read: int
    submitted_at: str
    started_at: str | None
    finished_at: str | None
    params: dict[str, Any]
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    cancel_requested: bool
    committing: bool
    attempts: int
    worker: str | None

    def public(self) -> dict[str, Any]:
        """What clients see: the bookkeeping fields (lease owner, flags) stay internal."""
        return {
            "job_id": self.job_id,
            "kind": self.kind,
            "status": self.status.value,
            "progress": self.progress,
            "stage": self.stage,
            "rows_read": self.rows_read,
            "submitted_at": self.submitted_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "result": self.result,
            "error": self.error,
        }


# --- Lua -------------------------------------------------------------------------------------
# Every job script gets KEYS = {record, lease, index, metrics_jobs, metrics_seconds, ...} and
# ARGV = {now_iso, ttl_seconds, lost_error_json, cancelled_error_json, ...script arguments}.
# ``settle`` runs first, so a lapsed lease is judged the same way by every entry point.
# ``finalized`` is called by every transition to a final status, and only there.

_PRELUDE = (
    """
local job, lease, index, mjobs, mseconds = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local now, ttl = ARGV[1], tonumber(ARGV[2])
local BUCKETS = {"""
    + ", ".join(repr(float(bound)) for bound in DURATION_BUCKETS)
    + """}

local function touch()
  redis.call('EXPIRE', job, ttl)
  redis.call('EXPIRE', index, ttl)
end

local function server_seconds()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

local function finalized(status)
  local base = (redis.call('HGET', job, 'kind') or 'unknown') .. '|' .. status
  redis.call('HINCRBY', mjobs, base, 1)
  redis.call('EXPIRE', mjobs, ttl)
  local started = tonumber(redis.call('HGET', job, 'started_ts') or '')
  if started then
    local seconds = math.max(0, server_seconds() - started)
    for i, bound in ipairs(BUCKETS) do
      if seconds <= bound then redis.call('HINCRBY', mseconds, base .. '|' .. i, 1) end
    end
    redis.call('HINCRBY', mseconds, base .. '|count', 1)
    redis.call('HINCRBYFLOAT', mseconds, base .. '|sum', string.format('%.6f', seconds))
    redis.call('EXPIRE', mseconds, ttl)
  end
end

local function settle()
  if redis.call('HGET', job, 'status') == 'running' and redis.call('EXISTS', lease) == 0 then
    if redis.call('HGET', job, 'cancel_requested') == '1' then
      redis.call('HSET', job, 'status', 'cancelled', 'error', ARGV[4], 'finished_at', now)
      finalized('cancelled')
    else
      redis.call('HSET', job, 'status', 'failed', 'error', ARGV[3], 'finished_at', now)
      finalized('failed')
    end
    touch()
  end
  return redis.call('HGET', job, 'status')
end
"""
)

_READ = (
    _PRELUDE
    + """
if not settle() then return false end
return redis.call('HGETALL', job)
"""
)

# ARGV[5..]: job_id, kind, params_json, score, index_limit, fingerprint, prefix; KEYS[6]: idem
_CREATE = (
    _PRELUDE
    + """
local job_id, fingerprint, prefix = ARGV[5], ARGV[10], ARGV[11]
local idem = KEYS[6]
if idem then
  local prev = redis.call('HMGET', idem, 'job_id', 'fingerprint')
  if prev[1] and redis.call('EXISTS', prefix .. ':job:' .. prev[1]) == 1 then
    if prev[2] == fingerprint then return {'existing', prev[1]} end
    return {'conflict', prev[1]}
  end
end
redis.call('HSET', job, 'job_id', job_id, 'kind', ARGV[6], 'status', 'queued', 'progress', '0',
  'rows_read', '0', 'submitted_at', now, 'params', ARGV[7], 'cancel_requested', '0',
  'committing', '0', 'attempts', '0')
redis.call('ZADD', index, ARGV[8], job_id)
local extra = redis.call('ZCARD', index) - tonumber(ARGV[9])
if extra > 0 then redis.call('ZREMRANGEBYRANK', index, 0, extra - 1) end
touch()
if idem then
  redis.call('HSET', idem, 'job_id', job_id, 'fingerprint', fingerprint)
  redis.call('EXPIRE', idem, ttl)
end
return {'created', redis.call('HGETALL', job)}
"""
)

# ARGV[5..]: worker, lease_ms
_START = (
    _PRELUDE
    + """
local status = redis.call('HGET', job, 'status')
if status ~= 'queued' then return false end
redis.call('HSET', job, 'status', 'running', 'started_at', now, 'worker', ARGV[5],
  'started_ts', string.format('%.6f', server_seconds()))
redis.call('HINCRBY', job, 'attempts', 1)
redis.call('SET', lease, ARGV[5], 'PX', ARGV[6])
touch()
return redis.call('HGETALL', job)
"""
)

# ARGV[5..]: worker, lease_ms
_HEARTBEAT = (
    _PRELUDE
    + """
if settle() ~= 'running' or redis.call('HGET', job, 'worker') ~= ARGV[5] then return 0 end
redis.call('SET', lease, ARGV[5], 'PX', ARGV[6])
touch()
return 1
"""
)

# ARGV[5..]: stage, fraction, rows_read.  Returns 1 when the worker should stop.
_PROGRESS = (
    _PRELUDE
    + """
if settle() ~= 'running' then return 1 end
local fraction = ARGV[6]
local current = tonumber(redis.call('HGET', job, 'progress') or '0')
if tonumber(fraction) < current then fraction = redis.call('HGET', job, 'progress') end
redis.call('HSET', job, 'stage', ARGV[5], 'progress', fraction, 'rows_read', ARGV[7])
touch()
if redis.call('HGET', job, 'cancel_requested') == '1' then return 1 end
return 0
"""
)

# ARGV[5]: error json.  KEYS[6] (optional): the idempotency key to forget.
_FAIL_QUEUED = (
    _PRELUDE
    + """
if redis.call('HGET', job, 'status') ~= 'queued' then return 0 end
redis.call('HSET', job, 'status', 'failed', 'finished_at', now, 'error', ARGV[5])
finalized('failed')
touch()
if KEYS[6] then redis.call('DEL', KEYS[6]) end
return 1
"""
)

# ARGV[5]: error json for a queued job.  Returns {outcome, record}.
_CANCEL = (
    _PRELUDE
    + """
local status = settle()
if not status then return false end
local outcome
if status == 'queued' then
  redis.call('HSET', job, 'status', 'cancelled', 'finished_at', now, 'error', ARGV[5])
  finalized('cancelled')
  touch()
  outcome = 'cancelled'
elseif status == 'running' then
  if redis.call('HGET', job, 'committing') == '1' then
    outcome = 'committing'
  else
    redis.call('HSET', job, 'cancel_requested', '1')
    touch()
    outcome = 'requested'
  end
else
  outcome = 'final'
end
return {outcome, redis.call('HGETALL', job)}
"""
)

_BEGIN_COMMIT = (
    _PRELUDE
    + """
if settle() ~= 'running' or redis.call('HGET', job, 'cancel_requested') == '1' then return 0 end
redis.call('HSET', job, 'committing', '1')
touch()
return 1
"""
)

# ARGV[5..]: status, result_json or '', error_json or ''
_FINISH = (
    _PRELUDE
    + """
if settle() ~= 'running' then return 0 end
local status = ARGV[5]
if status == 'succeeded' and redis.call('HGET', job, 'cancel_requested') == '1' then return 0 end
redis.call('HSET', job, 'status', status, 'finished_at', now)
if status == 'succeeded' then redis.call('HSET', job, 'progress', '1') end
if ARGV[6] ~= '' then redis.call('HSET', job, 'result', ARGV[6])
else redis.call('HDEL', job, 'result') end
if ARGV[7] ~= '' then redis.call('HSET', job, 'error', ARGV[7])
else redis.call('HDEL', job, 'error') end
redis.call('DEL', lease)
finalized(status)
touch()
return 1
"""
)


def _text(value: Any) -> str:
    """Replies are bytes or str depending on the client's ``decode_responses``; accept both."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _now() -> datetime:
    return datetime.now(UTC)


def _dump(value: Any) -> str:
    """Canonical JSON, so equal bodies give equal fingerprints whatever their key order."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _job_from_hash(flat: Sequence[Any]) -> Job:
    fields = {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat), 2)}

    def loads(name: str) -> Any:
        raw = fields.get(name)
        return None if raw is None else json.loads(raw)

    return Job(
        job_id=fields["job_id"],
        kind=fields["kind"],
        status=JobStatus(fields["status"]),
        progress=float(fields.get("progress", "0")),
        stage=fields.get("stage"),
        rows_read=int(fields.get("rows_read", "0")),
        submitted_at=fields["submitted_at"],
        started_at=fields.get("started_at"),
        finished_at=fields.get("finished_at"),
        params=loads("params") or {},
        result=loads("result"),
        error=loads("error"),
        cancel_requested=fields.get("cancel_requested") == "1",
        committing=fields.get("committing") == "1",
        attempts=int(fields.get("attempts", "0")),
        worker=fields.get("worker"),
    )


def _check_error(error: Any) -> None:
    if not (
        isinstance(error, dict)
        and isinstance(error.get("code"), str)
        and isinstance(error.get("message"), str)
    ):
        raise ValueError('error must be a dict {"code": str, "message": str}')


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
        lost = {
            "code": "worker_lost",
            "message": (
                f"the worker running this job stopped (no heartbeat for {lease_seconds:g} s)"
            ),
        }
        self._lost_json = _dump(lost)
        self._worker_gone_json = _dump(CANCELLED_WORKER_GONE)
        self._read = redis.register_script(_READ)
        self._create = redis.register_script(_CREATE)
        self._start = redis.register_script(_START)
        self._heartbeat = redis.register_script(_HEARTBEAT)
        self._progress = redis.register_script(_PROGRESS)
        self._cancel = redis.register_script(_CANCEL)
        self._fail_queued = redis.register_script(_FAIL_QUEUED)
        self._begin_commit = redis.register_script(_BEGIN_COMMIT)
        self._finish = redis.register_script(_FINISH)

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
        outcome = _text(reply[0])
        if outcome == "created":
            return _job_from_hash(reply[1]), True
        existing_id = _text(reply[1])
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
        return _job_from_hash(flat)

    def list(self, status: JobStatus | None = None, limit: int = 50) -> list[Job]:
        """Newest first. Reads a snapshot of the (bounded) index, so concurrent submissions
        cannot shift pages under us, and drops ids whose record has expired."""
        limit = min(max(limit, 0), MAX_LIST_LIMIT)
        wanted = JobStatus(status) if status is not None else None
        if limit == 0:
            return []
        ids = [_text(i) for i in cast(list[Any], self._redis.zrevrange(self._index, 0, -1))]
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
                job = _job_from_hash(flat)
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
        return _job_from_hash(flat) if flat else None

    def heartbeat(self, job_id: str, worker: str) -> bool:
        """False tells the worker it no longer owns the job (lease lapsed, finished, or taken)."""
        if not _ID_RE.match(job_id):
            return False
        return bool(self._call(self._heartbeat, job_id, worker, self._lease_ms))

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
        outcome, job = _text(reply[0]), _job_from_hash(reply[1])
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
        _check_error(error)
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
            _check_error(error)
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
            kind, _, status = _text(field).rpartition("|")
            finished[(kind, status)] = int(_text(value))
        parts: dict[tuple[str, str], dict[str, str]] = {}
        for field, value in raw_seconds.items():
            kind, status, slot = _text(field).rsplit("|", 2)
            parts.setdefault((kind, status), {})[slot] = _text(value)
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


@dataclass(frozen=True)
class DurationHistogram:
    #: (upper bound in seconds, jobs at or under it), cumulative, in DURATION_BUCKETS order;
    #: ``count`` is the +Inf bucket.
    buckets: tuple[tuple[float, int], ...]
    sum: float
    count: int


@dataclass(frozen=True)
class JobMetrics:
    #: (kind, final status) -> jobs that reached it
    finished: dict[tuple[str, str], int]
    #: (kind, final status) -> time from start to that status, for jobs that ran
    durations: dict[tuple[str, str], DurationHistogram]


# --- worker heartbeats -------------------------------------------------------------------------
# Server time (TIME) rather than each host's clock, so clock skew between workers and the API
# cannot make a live worker look dead. KEYS[1] = the queue's sorted set.

_BEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - ttl))
redis.call('PEXPIRE', KEYS[1], math.ceil(ttl * 1000))
return 1
"""

_ALIVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
return redis.call('ZRANGEBYSCORE', KEYS[1], now - tonumber(ARGV[1]), '+inf')
"""


class WorkerHeartbeats:
    """Readiness: which queues have a live consumer, from heartbeats kept in Redis (a broadcast
    inspect is too slow for a probe)."""

    def __init__(self, redis: redis.Redis, prefix: str = "rvt", ttl_seconds: float = 10.0) -> None:
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        self._redis = redis
        self._prefix = prefix
        self._ttl = ttl_seconds
        self._beat = redis.register_script(_BEAT)
        self._alive = redis.register_script(_ALIVE)

    def key(self, queue: str) -> str:
        return f"{self._prefix}:workers:{queue}"

    def beat(self, queue: str, worker: str) -> None:
        """Call more often than ``ttl_seconds``; the key itself expires when every worker stops."""
        self._beat(keys=[self.key(queue)], args=[worker, repr(self._ttl)])

    def leave(self, queue: str, worker: str) -> None:
        """A clean shutdown stops counting at once instead of after ``ttl_seconds``."""
        self._redis.zrem(self.key(queue), worker)

    def alive(self, queue: str) -> list[str]:
        names = cast(list[Any], self._alive(keys=[self.key(queue)], args=[repr(self._ttl)]))
        return sorted(_text(name) for name in names)
