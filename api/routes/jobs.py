"""The job records: status, progress and result of trainings, and cancelling them.

A cancel is an action on the job, not the removal of its record: ``POST /jobs/{id}/cancel``
(``202`` with the job; the worker stops at its next progress report). There is no ``DELETE``:
records expire on their own (``JOB_TTL_SECONDS``), and an idempotency key keeps pointing at its
job until then, so a record must outlive any retry of the request that made it.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Query

from api.deps import JobStoreDep, TrainingQueueDep
from api.errors import error_responses
from api.routes.params import JobIdPath, link
from api.schemas.jobs import JobList, JobOut
from api.security import ReadAccess, WriteAccess
from shared.jobs.records import Job, JobStatus

log = logging.getLogger(__name__)
router = APIRouter(prefix="/jobs", tags=["jobs"], dependencies=[ReadAccess])

JOB_PATH = "/jobs/{job_id}"
CANCEL_PATH = "/jobs/{job_id}/cancel"


def job_links(expression: str) -> dict[str, Any]:
    """Links to the job whose id ``expression`` evaluates to."""
    job_id = {"job_id": expression}
    return {
        "GetJob": link(JOB_PATH, "get", "Poll the job.", job_id),
        "CancelJob": link(CANCEL_PATH, "post", "Cancel the job.", job_id),
    }


def job_out(job: Job) -> JobOut:
    return JobOut.model_validate(job.public())


@router.get(
    "",
    response_model=JobList,
    responses={
        200: {"description": "Newest first.", "links": job_links("$response.body#/jobs/0/job_id")},
        **error_responses(422, 503),
    },
    summary="Recent jobs",
)
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
    responses={
        200: {"description": "The job.", "links": job_links("$request.path.job_id")},
        **error_responses(404, 422, 503),
    },
    summary="One job",
)
def get_job(job_id: JobIdPath, jobs: JobStoreDep) -> JobOut:
    """404 for an id no job has (or whose record expired)."""
    return job_out(jobs.get(job_id))


@router.post(
    "/{job_id}/cancel",
    dependencies=[WriteAccess],
    status_code=202,
    response_model=JobOut,
    responses={
        202: {
            "description": "Cancel accepted: the job as it is now (poll it for the end).",
            "links": job_links("$response.body#/job_id"),
        },
        **error_responses(404, 409, 422, 503),
    },
    summary="Cancel a job",
)
def cancel_job(job_id: JobIdPath, jobs: JobStoreDep, queue: TrainingQueueDep) -> JobOut:
    """A queued job is cancelled at once (the answer says ``cancelled``); a running one is asked
    to stop, and its worker ends it at its next progress report (the answer still says
    ``running``: poll the job). Asking again meanwhile is accepted too. ``409`` once the job has
    ended, or is past its commit point (saving its result); ``404`` for an unknown id."""
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
