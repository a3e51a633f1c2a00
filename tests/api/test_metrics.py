"""GET /metrics: request metrics by route template, predictions by version, and the worker-side
families read from Redis (job records on fakeredis, written by the real JobStore scripts)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared.jobs.records import JobStatus
from tests.api.conftest import Api, MakeApi
from tests.api.routes.test_predict import RECORD
from tests.deploy.conftest import check_metrics

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(api: Api) -> Samples:
    response = api.client.get("/metrics")
    assert response.status_code == 200, response.text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


def test_metrics_answers_in_the_prometheus_text_format(api: Api) -> None:
    response = api.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "# TYPE rvt_http_requests_total counter" in response.text
    openmetrics = api.client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert openmetrics.text.rstrip().endswith("# EOF")


def test_requests_are_counted_by_route_template_not_by_raw_path(api: Api) -> None:
    ids = [uuid.uuid4().hex for _ in range(3)]
    for job_id in ids:
        assert api.client.get(f"/jobs/{job_id}").status_code == 404
    api.client.get("/jobs")
    samples = scrape(api)
    route = "/jobs/{job_id}"
    assert value(samples, "rvt_http_requests_total", method="GET", route=route, status="404") == 3
    assert value(samples, "rvt_http_requests_total", method="GET", route="/jobs", status="200") == 1
    assert value(samples, "rvt_http_request_duration_seconds_count", method="GET", route=route) == 3
    assert not any(job_id in str(labels) for _, labels in samples for job_id in ids)


def test_paths_that_match_no_route_share_one_label(api: Api) -> None:
    for i in range(3):
        api.client.get(f"/scanner-probe-{i}")
    samples = scrape(api)
    assert (
        value(samples, "rvt_http_requests_total", method="GET", route="<unmatched>", status="404")
        == 3
    )
    assert not any("scanner-probe" in str(labels) for _, labels in samples)


def test_an_unhandled_error_is_counted_as_a_500(api: Api) -> None:
    api.predictor.fail_with = RuntimeError("boom")
    assert api.client.post("/predict", json={"records": [RECORD]}).status_code == 500
    samples = scrape(api)
    assert (
        value(samples, "rvt_http_requests_total", method="POST", route="/predict", status="500")
        == 1
    )


def test_predictions_are_counted_by_the_model_version_that_scored_them(api: Api) -> None:
    for size in (1, 4):
        response = api.client.post("/predict", json={"records": [RECORD] * size})
        assert response.status_code == 200, response.text
    assert value(scrape(api), "rvt_predictions_total", model_version="v1") == 5


def test_job_outcomes_and_training_durations_come_from_redis(api: Api) -> None:
    jobs = api.jobs
    done, _ = jobs.create("training", {"n": 1})
    jobs.start(done.job_id, "w1")
    assert jobs.begin_commit(done.job_id)
    assert jobs.finish(done.job_id, JobStatus.SUCCEEDED, result={"version": "v9"})
    broken, _ = jobs.create("training", {"n": 2})
    jobs.start(broken.job_id, "w1")
    jobs.finish(broken.job_id, JobStatus.FAILED, error={"code": "x", "message": "y"})
    api.client.post(f"/jobs/{jobs.create('training', {'n': 3})[0].job_id}/cancel")  # queued

    samples = scrape(api)
    for status, count in (("succeeded", 1), ("failed", 1), ("cancelled", 1)):
        assert value(samples, "rvt_jobs_finished_total", kind="training", status=status) == count
    assert value(samples, "rvt_training_duration_seconds_count", status="succeeded") == 1
    assert value(samples, "rvt_training_duration_seconds_count", status="failed") == 1
    # a job cancelled before it started never ran: no duration
    assert value(samples, "rvt_training_duration_seconds_count", status="cancelled") is None
    assert (
        value(samples, "rvt_training_duration_seconds_bucket", status="succeeded", le="+Inf") == 1
    )


def test_every_final_status_is_exposed_before_any_job_ends(api: Api) -> None:
    samples = scrape(api)
    for status in ("succeeded", "failed", "cancelled"):
        assert value(samples, "rvt_jobs_finished_total", kind="training", status=status) == 0


def test_queue_depth_and_live_workers_are_read_at_scrape_time(api: Api) -> None:
    redis = api.services.redis
    redis.rpush("training", b"m1", b"m2")
    redis.rpush("training\x06\x163", b"m3")  # a priority sub-queue of "training"
    redis.rpush("prediction", b"m4")
    api.services.presence.announce("prediction", "prediction@host-a")
    api.services.presence.announce("prediction", "prediction@host-b")
    samples = scrape(api)
    assert value(samples, "rvt_queue_depth", queue="training") == 3
    assert value(samples, "rvt_queue_depth", queue="prediction") == 1
    assert value(samples, "rvt_workers_alive", queue="prediction") == 2
    assert value(samples, "rvt_workers_alive", queue="training") == 0
    redis.delete("training")
    assert value(scrape(api), "rvt_queue_depth", queue="training") == 1


def test_with_redis_down_metrics_still_answers_and_says_so(api: Api) -> None:
    api.client.get("/healthz")
    api.server.connected = False  # fakeredis: every command now fails to connect
    samples = scrape(api)
    assert value(samples, "rvt_redis_up") == 0
    assert not names(samples) & {"rvt_queue_depth", "rvt_jobs_finished_total", "rvt_workers_alive"}
    assert value(samples, "rvt_http_requests_total", method="GET", route="/healthz", status="200")
    api.server.connected = True
    samples = scrape(api)
    assert value(samples, "rvt_redis_up") == 1
    assert "rvt_queue_depth" in names(samples)


def test_each_app_counts_its_own_requests(make_api: MakeApi) -> None:
    first, second = make_api(), make_api()
    for _ in range(3):
        first.client.get("/healthz")
    samples = scrape(second)
    assert (
        value(samples, "rvt_http_requests_total", method="GET", route="/healthz", status="200")
        is None
    )


@pytest.mark.external
def test_promtool_accepts_the_exposition(api: Api, tmp_path: Path) -> None:
    """Every family populated (requests, errors, predictions, jobs, durations, queues)."""
    api.client.post("/predict", json={"records": [RECORD]})
    api.client.get("/nowhere")
    job, _ = api.jobs.create("training", {})
    api.jobs.start(job.job_id, "w")
    api.jobs.finish(job.job_id, JobStatus.FAILED, error={"code": "x", "message": "y"})
    api.services.redis.rpush("training", b"m")
    text = api.client.get("/metrics").text
    assert "rvt_training_duration_seconds_bucket" in text
    result = check_metrics(text)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.external
def test_promtool_rejects_a_malformed_exposition(tmp_path: Path) -> None:
    """The check can fail: a counter sample without its TYPE's suffix and a duplicate HELP."""
    bad = '# HELP x_total a\n# HELP x_total b\n# TYPE x_total counter\nx_total{a="1"} one\n'
    result = check_metrics(bad)
    assert result.returncode != 0
