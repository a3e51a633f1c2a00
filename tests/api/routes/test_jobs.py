"""GET /jobs, GET /jobs/{id}, POST /jobs/{id}/cancel (and no DELETE)."""

from __future__ import annotations

import uuid

from shared.jobs.records import JobStatus
from tests.api.conftest import Api, assert_error


def _submit(api: Api, **body: object) -> str:
    response = api.client.post("/train", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def _finish(api: Api, job_id: str, status: JobStatus = JobStatus.SUCCEEDED) -> None:
    """What a worker does, straight on the store."""
    assert api.jobs.start(job_id, "worker-1") is not None
    result = {"version": "v3"} if status is JobStatus.SUCCEEDED else None
    assert api.jobs.finish(job_id, status, result=result)


def test_get_job_shows_every_public_field(api: Api) -> None:
    job_id = _submit(api)
    api.jobs.start(job_id, "worker-1")
    api.jobs.report_progress(job_id, "reading", 0.25, 5000)
    response = api.client.get(f"/jobs/{job_id}")
    assert response.status_code == 200
    job = response.json()
    assert set(job) == {
        "job_id", "kind", "status", "progress", "stage", "rows_read", "submitted_at",
        "started_at", "finished_at", "result", "error",
    }  # fmt: skip
    assert job["status"] == "running" and job["stage"] == "reading"
    assert job["progress"] == 0.25 and job["rows_read"] == 5000
    assert job["started_at"] and job["finished_at"] is None


def test_a_finished_job_shows_its_result(api: Api) -> None:
    job_id = _submit(api)
    _finish(api, job_id)
    job = api.client.get(f"/jobs/{job_id}").json()
    assert job["status"] == "succeeded" and job["result"] == {"version": "v3"}
    assert job["progress"] == 1.0 and job["error"] is None


def test_unknown_job_is_404(api: Api) -> None:
    missing = uuid.uuid4().hex
    error = assert_error(api.client.get(f"/jobs/{missing}"), 404, "job_not_found")
    assert missing in error["message"]
    assert_error(api.client.get("/jobs/not-even-an-id"), 404, "job_not_found")


def test_list_is_newest_first_with_a_limit(api: Api) -> None:
    ids = [_submit(api, random_state=i) for i in range(5)]
    response = api.client.get("/jobs")
    assert response.status_code == 200
    assert [job["job_id"] for job in response.json()["jobs"]] == ids[::-1]
    limited = api.client.get("/jobs", params={"limit": 2}).json()["jobs"]
    assert [job["job_id"] for job in limited] == ids[:-3:-1]


def test_list_filters_by_status(api: Api) -> None:
    queued, done = _submit(api, random_state=1), _submit(api, random_state=2)
    _finish(api, done)
    succeeded = api.client.get("/jobs", params={"status": "succeeded"}).json()["jobs"]
    assert [job["job_id"] for job in succeeded] == [done]
    still = api.client.get("/jobs", params={"status": "queued"}).json()["jobs"]
    assert [job["job_id"] for job in still] == [queued]


def test_list_with_an_unknown_status_is_422_naming_the_allowed_ones(api: Api) -> None:
    response = api.client.get("/jobs", params={"status": "done"})
    error = assert_error(response, 422, "validation_error")
    item = error["details"][0]
    assert item["field"] == "status" and item["location"] == "query"
    assert item["allowed"] == ["queued", "running", "succeeded", "failed", "cancelled"]
    assert "succeeded" in error["message"]


def test_list_limit_bounds(api: Api) -> None:
    for bad in (0, 101):
        error = assert_error(
            api.client.get("/jobs", params={"limit": bad}), 422, "validation_error"
        )
        assert error["details"][0]["field"] == "limit"


def test_cancel_a_queued_job_cancels_it_and_revokes_its_message(api: Api) -> None:
    job_id = _submit(api)
    response = api.client.post(f"/jobs/{job_id}/cancel")
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "cancelled"
    assert api.queue.revoked == [job_id]
    assert api.client.get(f"/jobs/{job_id}").json()["status"] == "cancelled"


def test_cancel_a_running_job_asks_its_worker_and_does_not_revoke(api: Api) -> None:
    job_id = _submit(api)
    api.jobs.start(job_id, "worker-1")
    response = api.client.post(f"/jobs/{job_id}/cancel")
    assert response.status_code == 202
    assert response.json()["status"] == "running"
    assert api.jobs.get(job_id).cancel_requested
    assert api.queue.revoked == []


def test_cancel_a_finished_job_is_409(api: Api) -> None:
    job_id = _submit(api)
    _finish(api, job_id)
    error = assert_error(api.client.post(f"/jobs/{job_id}/cancel"), 409, "job_conflict")
    assert error["details"]["status"] == "succeeded"


def test_cancel_past_the_commit_point_is_409(api: Api) -> None:
    job_id = _submit(api)
    api.jobs.start(job_id, "worker-1")
    assert api.jobs.begin_commit(job_id)
    error = assert_error(api.client.post(f"/jobs/{job_id}/cancel"), 409, "job_conflict")
    assert "commit point" in error["message"]


def test_cancel_an_unknown_job_is_404(api: Api) -> None:
    assert_error(api.client.post(f"/jobs/{uuid.uuid4().hex}/cancel"), 404, "job_not_found")
    assert_error(api.client.post("/jobs/not-even-an-id/cancel"), 404, "job_not_found")


def test_a_cancel_is_not_a_delete(api: Api) -> None:
    """A job's record is not a client's to remove (it expires on its own, and an idempotency
    key points at it until then): DELETE is not a method of a job, and changes nothing."""
    job_id = _submit(api)
    response = api.client.delete(f"/jobs/{job_id}")
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "GET, OPTIONS"
    assert api.client.get(f"/jobs/{job_id}").json()["status"] == "queued"
    assert api.queue.revoked == []


def test_redis_outage_is_503_redis_unavailable(api: Api) -> None:
    """The error path, on fakeredis's simulated outage (how quick the answer is, is timed
    against a real refused connection in tests/api/test_services.py)."""
    job_id = _submit(api)
    api.server.connected = False
    for response in (
        api.client.get(f"/jobs/{job_id}"),
        api.client.get("/jobs"),
        api.client.post(f"/jobs/{job_id}/cancel"),
    ):
        assert_error(response, 503, "redis_unavailable")
