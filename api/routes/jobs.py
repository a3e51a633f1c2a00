"""The job records: status, progress and result of trainings, and cancelling them."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import JobStoreDep, TrainingQueueDep
from api.errors import error_responses
from api.schemas import JobList, JobOut
from api.security import ReadAccess, WriteAccess
from shared.jobs.records import Job, JobStatus

log = logging.getLogger(__name__)
router = APIRouter(prefix="/jobs", tags=["jobs"], dependencies=[ReadAccess])


def job_out(job: Job) -> JobOut:
    return JobOut.model_validate(job.public())


@router.get("", response_model=JobList, responses=error_responses(422, 503), summary="Recent jobs")
def list_jobs(
    jobs: JobStoreDep,
    status: Annotated[JobStatus | None, Query(description="Only jobs in this status.")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> JobList:
    """Newest first."""
    return JobList(jobs=[job_out(job) for job in jobs.list(status=status, limit=limit)])


@router.get(
    "/{job_id}",
    name="get_job",
    response_model=JobOut,
    responses=error_responses(404, 422, 503),
    summary="One job",
)
def get_job(job_id: str, jobs: JobStoreDep) -> JobOut:
    return job_out(jobs.get(job_id))


@router.delete(
    "/{job_id}",
    dependencies=[WriteAccess],
    status_code=202,
    response_model=JobOut,
    responses=error_responses(401, 404, 409, 422, 503),
    summary="Cancel a job",
)
def cancel_job(job_id: str, jobs: JobStoreDep, queue: TrainingQueueDep) -> JobOut:
    """A queued job is cancelled at once; a running one is asked to stop and its worker ends it
    at its next progress report (poll the job). 409 once it ended or is saving its result."""
    job = jobs.request_cancel(job_id)
    log.info("cancel requested", extra={"job_id": job_id, "status": job.status.value})
    if job.status is JobStatus.CANCELLED:  # it was still queued: spare the worker the message
        try:
            queue.revoke(job_id)
        except Exception:
            log.warning(
                "could not revoke the message of job %s",
                job_id,
                exc_info=True,
                extra={"job_id": job_id},
            )
    return job_out(job)
