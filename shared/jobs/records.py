"""A job as clients and workers see it: its status, its record, and the errors it can end with."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = ["FINAL_STATUSES", "JOB_ID_PATTERN", "Job", "JobStatus"]

#: A job id: what the store creates (uuid4 hex) and the only shape it looks up.
JOB_ID_PATTERN = r"^[0-9a-f]{32}$"


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


def worker_lost_error(lease_seconds: float) -> dict[str, str]:
    return {
        "code": "worker_lost",
        "message": (
            f"the worker running this job stopped (its lease was not renewed for "
            f"{lease_seconds:g} s)"
        ),
    }


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

    @classmethod
    def from_hash(cls, flat: Sequence[Any]) -> Job:
        """From a flat ``HGETALL`` reply: fields that are ``None`` are absent, dicts are JSON."""
        fields = {text(flat[i]): text(flat[i + 1]) for i in range(0, len(flat), 2)}

        def loads(name: str) -> Any:
            raw = fields.get(name)
            return None if raw is None else json.loads(raw)

        return cls(
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


def text(value: Any) -> str:
    """Replies are bytes or str depending on the client's ``decode_responses``; accept both."""
    return value.decode() if isinstance(value, bytes) else str(value)


def check_error(error: Any) -> None:
    if not (
        isinstance(error, dict)
        and isinstance(error.get("code"), str)
        and isinstance(error.get("message"), str)
    ):
        raise ValueError('error must be a dict {"code": str, "message": str}')
