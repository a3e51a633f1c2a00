"""POST /train: 202 at once, idempotency, validation, and a broker outage."""

from __future__ import annotations

import pytest
from kombu.exceptions import OperationalError

from shared.jobs.records import JobStatus
from tests.api.conftest import DEFAULT_DATASET, Api, MakeApi, assert_error


def test_train_answers_202_with_location_and_a_queued_job(api: Api) -> None:
    response = api.client.post("/train", json={})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "queued"
    assert body["status_url"] == f"/jobs/{body['job_id']}"
    assert response.headers["location"] == body["status_url"]
    assert api.queue.submitted == [body["job_id"]]
    job = api.client.get(body["status_url"]).json()
    assert job["status"] == "queued" and job["kind"] == "training"


def test_the_job_records_the_full_normalized_body(api: Api) -> None:
    body = {"params": {"C": 0.5, "class_weight": "balanced"}, "promote": False}
    job_id = api.client.post("/train", json=body).json()["job_id"]
    assert api.jobs.get(job_id).params == {
        "dataset": DEFAULT_DATASET,
        "estimator": "logistic_regression",
        "params": {"C": 0.5, "class_weight": "balanced", "max_iter": 1000},
        "test_size": 0.2,
        "random_state": 42,
        "min_roc_auc": api.settings.min_roc_auc,
        "promote": False,
    }


def test_no_body_at_all_means_every_default(api: Api) -> None:
    response = api.client.post("/train")
    assert response.status_code == 202, response.text
    assert api.jobs.get(response.json()["job_id"]).params["dataset"] == DEFAULT_DATASET


def test_the_default_dataset_is_left_to_the_worker(make_api: MakeApi) -> None:
    """Making the default dataset is training work: the request only records and enqueues."""
    api = make_api()
    (api.data_dir / DEFAULT_DATASET).unlink()
    response = api.client.post("/train", json={})
    assert response.status_code == 202, response.text
    assert api.jobs.get(response.json()["job_id"]).params["dataset"] == DEFAULT_DATASET
    assert not (api.data_dir / DEFAULT_DATASET).exists()


def test_an_uploaded_dataset_can_be_named(api: Api) -> None:
    (api.data_dir / "mine.csv").write_bytes((api.data_dir / DEFAULT_DATASET).read_bytes())
    job_id = api.client.post("/train", json={"dataset": "mine.csv"}).json()["job_id"]
    assert api.jobs.get(job_id).params["dataset"] == "mine.csv"


def test_same_idempotency_key_and_body_returns_the_same_job_submitted_once(api: Api) -> None:
    headers = {"Idempotency-Key": "order-42"}
    first = api.client.post("/train", json={"params": {"C": 2}}, headers=headers)
    again = api.client.post("/train", json={"params": {"C": 2.0}}, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json()["job_id"] == again.json()["job_id"]
    assert again.headers["location"] == first.headers["location"]
    assert api.queue.submitted == [first.json()["job_id"]]


def test_same_idempotency_key_with_another_body_is_422(api: Api) -> None:
    headers = {"Idempotency-Key": "order-43"}
    first = api.client.post("/train", json={}, headers=headers).json()["job_id"]
    response = api.client.post("/train", json={"test_size": 0.3}, headers=headers)
    error = assert_error(response, 422, "idempotency_conflict")
    assert error["details"] == {"job_id": first}
    assert api.queue.submitted == [first]


def test_an_overlong_idempotency_key_is_422(api: Api) -> None:
    response = api.client.post("/train", json={}, headers={"Idempotency-Key": "k" * 256})
    error = assert_error(response, 422, "validation_error")
    assert error["details"][0]["field"] == "Idempotency-Key"
    assert error["details"][0]["location"] == "header"


def test_unknown_dataset_is_422_naming_it(api: Api) -> None:
    response = api.client.post("/train", json={"dataset": "nope.csv"})
    error = assert_error(response, 422, "unknown_dataset")
    assert "nope.csv" in error["message"]
    assert DEFAULT_DATASET in error["details"]["allowed"]
    assert api.queue.submitted == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"params": {"C": 0}}, "params.C"),
        ({"params": {"C": -1}}, "params.C"),
        ({"params": {"class_weight": "heavy"}}, "params.class_weight"),
        ({"params": {"max_iter": 0}}, "params.max_iter"),
        ({"test_size": 1}, "test_size"),
        ({"test_size": 0}, "test_size"),
        ({"random_state": -1}, "random_state"),
        ({"min_roc_auc": 1.5}, "min_roc_auc"),
        ({"promote": "perhaps"}, "promote"),
        ({"dataset": 3}, "dataset"),
        ({"c": 1}, "c"),
        # the schema's own limits (issue #10): what it allows is what the server takes
        ({"dataset": ""}, "dataset"),
        ({"dataset": "../secret.csv"}, "dataset"),
        ({"dataset": "mine.txt"}, "dataset"),
        ({"random_state": 2**53}, "random_state"),
        # JSON types as the schema names them: no coercion from strings, numbers or floats
        ({"random_state": "5"}, "random_state"),
        ({"random_state": 5.5}, "random_state"),
        ({"random_state": True}, "random_state"),
        ({"params": {"max_iter": "100"}}, "params.max_iter"),
        ({"params": {"C": "1"}}, "params.C"),
        ({"promote": 0}, "promote"),
        ({"promote": "true"}, "promote"),
        ({"test_size": "0.5"}, "test_size"),
    ],
)
def test_bad_params_are_422_naming_the_field(api: Api, body: dict[str, object], field: str) -> None:
    error = assert_error(api.client.post("/train", json=body), 422, "validation_error")
    assert [item["field"] for item in error["details"]] == [field]
    assert field in error["message"]
    assert api.queue.submitted == []


def test_class_weight_error_lists_the_allowed_values(api: Api) -> None:
    response = api.client.post("/train", json={"params": {"class_weight": "heavy"}})
    item = assert_error(response, 422, "validation_error")["details"][0]
    assert item["allowed"] == [None, "balanced"]
    assert item["input"] == "heavy"


def test_an_integral_float_is_an_integer(api: Api) -> None:
    """JSON Schema's integer: 5.0 is 5 (and the job records 5)."""
    response = api.client.post("/train", json={"random_state": 5.0, "params": {"max_iter": 9.0}})
    assert response.status_code == 202, response.text
    params = api.jobs.get(response.json()["job_id"]).params
    assert params["random_state"] == 5 and isinstance(params["random_state"], int)
    assert params["params"]["max_iter"] == 9


def test_the_largest_json_safe_random_state_is_accepted(api: Api) -> None:
    response = api.client.post("/train", json={"random_state": 2**53 - 1})
    assert response.status_code == 202, response.text


@pytest.mark.parametrize("raw", [b"\xff\xfe{", b'{"promote": "\xe9"}'])
def test_a_body_that_is_not_utf8_is_422_not_400(api: Api, raw: bytes) -> None:
    """FastAPI's bare 400 for a body it cannot decode is the invalid-JSON 422 (issue #10)."""
    response = api.client.post("/train", content=raw, headers={"content-type": "application/json"})
    error = assert_error(response, 422, "validation_error")
    assert error["details"][0]["type"] == "json_invalid"
    assert api.queue.submitted == []


def test_a_body_that_is_not_json_is_422(api: Api) -> None:
    response = api.client.post(
        "/train", content=b"{not json", headers={"content-type": "application/json"}
    )
    error = assert_error(response, 422, "validation_error")
    assert error["details"][0]["field"] == "body"


def test_broker_outage_is_503_and_the_job_ends_failed_not_queued(api: Api) -> None:
    api.queue.fail_with = OperationalError("Error 111 connecting to 10.0.0.5:6379")
    response = api.client.post("/train", json={})
    error = assert_error(response, 503, "queue_unavailable")
    assert "10.0.0.5" not in response.text  # broker internals stay in the logs
    job = api.client.get(f"/jobs/{error['details']['job_id']}").json()
    assert job["status"] == JobStatus.FAILED
    assert job["error"]["code"] == "queue_unavailable"
    assert job["finished_at"] is not None
    assert job["started_at"] is None  # no worker ever claimed it


def test_retry_after_a_broker_outage_with_the_same_key_submits_afresh(api: Api) -> None:
    api.queue.fail_with = OperationalError("Error 111 connecting")
    headers = {"Idempotency-Key": "retry-me"}
    first = api.client.post("/train", json={}, headers=headers)
    assert first.status_code == 503
    api.queue.fail_with = None
    second = api.client.post("/train", json={}, headers=headers)
    assert second.status_code == 202
    assert second.json()["job_id"] != first.json()["error"]["details"]["job_id"]
    assert api.queue.submitted == [second.json()["job_id"]]


def test_redis_outage_is_503_redis_unavailable(api: Api) -> None:
    api.server.connected = False
    assert_error(api.client.post("/train", json={}), 503, "redis_unavailable")
    assert api.queue.submitted == []


@pytest.mark.parametrize("raw", [b'{"params": {"C": NaN}}', b'{"params": {"C": Infinity}}'])
def test_non_finite_numbers_are_422_not_500(api: Api, raw: bytes) -> None:
    response = api.client.post("/train", content=raw, headers={"content-type": "application/json"})
    error = assert_error(response, 422, "validation_error")
    assert error["details"][0]["field"] == "params.C"
