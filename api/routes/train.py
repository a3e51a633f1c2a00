"""POST /train: record the job, hand it to the training queue, answer at once."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Request, Response

from api.deps import DatasetStoreDep, JobStoreDep, SettingsDep, TrainingQueueDep
from api.errors import error_responses
from api.queue.ports import QueueUnavailableError
from api.routes.jobs import job_links
from api.schemas.jobs import TrainAccepted, TrainRequest
from api.security import WriteAccess
from shared.data.store import DatasetStore
from shared.jobs.store import JobStore
from shared.settings import Settings

log = logging.getLogger(__name__)
router = APIRouter(tags=["training"])

SUBMIT_FAILED = {
    "code": QueueUnavailableError.code,
    "message": "the training could not be queued (the broker was unreachable); submit it again",
}


def _normalized(body: TrainRequest, dataset: str, settings: Settings) -> dict[str, Any]:
    """The job's parameters with every default filled in: what the worker reads, and what an
    idempotency key is compared on (so ``{}`` and the same defaults spelled out are one job)."""
    return {
        "dataset": dataset,
        "estimator": body.estimator,
        "params": body.params.model_dump(),
        "test_size": body.test_size,
        "random_state": body.random_state,
        "min_roc_auc": (body.min_roc_auc if body.min_roc_auc is not None else settings.min_roc_auc),
        "promote": body.promote,
    }


def _dataset_name(body: TrainRequest, datasets: DatasetStore) -> str:
    if body.dataset is None or body.dataset == datasets.default_name:
        # The synthetic default is written on first use by the worker that trains on it:
        # this endpoint only records and enqueues, whatever the dataset.
        return datasets.default_name
    return datasets.get(body.dataset).name  # DatasetNotFoundError (422) names it


def _fail_unsubmitted(jobs: JobStore, job_id: str, idempotency_key: str | None) -> None:
    """A job whose message never reached the broker must not stay queued forever."""
    try:
        jobs.fail_queued(job_id, SUBMIT_FAILED, idempotency_key)
    except Exception:
        log.warning("could not mark unsubmitted job %s as failed", job_id, exc_info=True)


@router.post(
    "/train",
    dependencies=[WriteAccess],
    status_code=202,
    response_model=TrainAccepted,
    responses={
        202: {
            "description": "Accepted: poll `status_url` (also the `Location` header).",
            "headers": {
                "Location": {"description": "The job's URL.", "schema": {"type": "string"}}
            },
            "links": job_links("$response.body#/job_id"),
        },
        **error_responses(413, 422, 503),
    },
    summary="Start a training job",
)
def submit_training(
    request: Request,
    response: Response,
    jobs: JobStoreDep,
    datasets: DatasetStoreDep,
    queue: TrainingQueueDep,
    settings: SettingsDep,
    body: Annotated[TrainRequest | None, Body()] = None,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=255,
            description="Retrying with the same key and body returns the same job.",
        ),
    ] = None,
) -> TrainAccepted:
    """Training runs in a worker, never here: this only writes the job record and enqueues it.
    A retried request with the same ``Idempotency-Key`` gets the first job back, unsent again."""
    body = body or TrainRequest()
    params = _normalized(body, _dataset_name(body, datasets), settings)
    job, created = jobs.create(kind="training", params=params, idempotency_key=idempotency_key)
    if created:
        try:
            queue.submit(job.job_id)
        except Exception as exc:
            log.error(
                "could not enqueue training job %s: %s",
                job.job_id,
                exc,
                extra={"job_id": job.job_id},
            )
            _fail_unsubmitted(jobs, job.job_id, idempotency_key)
            raise QueueUnavailableError(
                "the training queue is unavailable; the job was not started (try again)",
                details={"job_id": job.job_id},
            ) from exc
        log.info("training job queued", extra={"job_id": job.job_id, "dataset": params["dataset"]})
    status_url = request.scope.get("root_path", "") + request.app.url_path_for(
        "get_job", job_id=job.job_id
    )
    response.headers["Location"] = status_url
    return TrainAccepted(job_id=job.job_id, status=job.status, status_url=status_url)
