"""The /v2 routes through the app factory: health, metadata, inference on production and on a
given version, and every error in the protocol's shape (the prediction path is the stand-in of
conftest.py, which scores the way the workers do)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from tritonclient.http import InferenceServerClient, InferRequestedOutput

from api.openinference.codec import HEADER_LENGTH
from shared.data.schema import FEATURE_COLUMNS
from shared.errors import OverloadedError
from shared.model.pipeline import ModelParams
from shared.model.training import TrainingRun, register_run, train_model
from shared.queues import PREDICTION_QUEUE
from tests.api.conftest import Api, MakeApi, assert_error
from tests.api.openinference.conftest import stand_in, v2_error
from tests.api.openinference.test_codec import json_body, records, triton_inputs
from tests.conftest import MakeDataset

INFER = "/v2/models/death_yn/infer"


def infer(api: Api, body: dict[str, Any], path: str = INFER, **kwargs: Any) -> Any:
    return api.client.post(path, json=body, **kwargs)


def outputs_of(response: Any) -> dict[str, list[Any]]:
    assert response.status_code == 200, response.text
    return {o["name"]: o["data"] for o in response.json()["outputs"]}


def pipeline_probabilities(api: Api, version: str, rows: list[dict[str, str]]) -> np.ndarray:
    frame = pd.DataFrame(rows).reindex(columns=FEATURE_COLUMNS)
    return np.asarray(api.registry.load(version).predict_proba(frame)[:, 1])


@pytest.fixture(scope="module")
def other_run(make_dataset: MakeDataset) -> TrainingRun:
    """A model unlike the registry's v1 (another C), registered by the tests that need a
    version whose probabilities differ from production's."""
    return train_model(make_dataset(20_000, 7), ModelParams(C=0.01))


def test_server_metadata_and_liveness(v2_api: Api) -> None:
    metadata = v2_api.client.get("/v2").json()
    assert metadata == {
        "name": "runtime-v-training",
        "version": v2_api.client.app.version,  # type: ignore[attr-defined]
        "extensions": ["binary_tensor_data"],
    }
    live = v2_api.client.get("/v2/health/live")
    assert (live.status_code, live.json()) == (200, {"live": True})


def test_ready_means_redis_a_prediction_worker_and_a_production_model(
    make_v2_api: MakeApi,
) -> None:
    api = make_v2_api()
    for path in ("/v2/health/ready", "/v2/models/death_yn/ready"):
        response = api.client.get(path)
        assert (response.status_code, response.json()) == (200, {"ready": True})
    api.services.presence.leave(PREDICTION_QUEUE, "worker-1")
    response = api.client.get("/v2/health/ready")
    assert response.status_code == 503
    assert response.json()["ready"] is False
    assert "no live worker consumes the 'prediction' queue" in response.json()["error"]

    empty = make_v2_api("empty")
    response = empty.client.get("/v2/models/death_yn/ready")
    assert response.status_code == 503
    assert "no production model yet" in response.json()["error"]


def test_model_metadata_describes_the_tensors_and_the_registrys_versions(v2_api: Api) -> None:
    metadata = v2_api.client.get("/v2/models/death_yn").json()
    assert metadata["name"] == "death_yn"
    assert metadata["versions"] == ["v1", "v2"]
    assert metadata["platform"] == "scikit-learn"
    assert metadata["inputs"] == [
        {"name": column, "datatype": "BYTES", "shape": [-1]} for column in FEATURE_COLUMNS
    ]
    assert metadata["outputs"] == [
        {"name": "probability", "datatype": "FP64", "shape": [-1]},
        {"name": "label", "datatype": "BYTES", "shape": [-1]},
    ]
    version = v2_api.client.get("/v2/models/death_yn/versions/v2").json()
    assert version["versions"] == ["v2"] and version["inputs"] == metadata["inputs"]
    ready = v2_api.client.get("/v2/models/death_yn/versions/v2/ready")
    assert (ready.status_code, ready.json()) == (200, {"ready": True})


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("/v2/models/death_yn/versions/v9", "model version 'v9' not found"),
        ("/v2/models/death_yn/versions/V1/ready", "model version 'V1' not found"),
        ("/v2/models/death_yn/versions/v01/infer", "model version 'v01' not found"),
        ("/v2/models/death_yn/versions/..%2Fv1/infer", "Not Found"),  # no route has that path
        ("/v2/models/hosp_yn", "unknown model 'hosp_yn'"),
        ("/v2/models/hosp_yn/ready", "unknown model 'hosp_yn'"),
        ("/v2/models/hosp_yn/infer", "unknown model 'hosp_yn'"),
        ("/v2/models/hosp_yn/versions/v1", "unknown model 'hosp_yn'"),
    ],
)
def test_an_unknown_model_or_version_is_a_404_naming_it(v2_api: Api, path: str, says: str) -> None:
    method = v2_api.client.post if path.endswith("/infer") else v2_api.client.get
    kwargs = {"json": json_body(records(1))} if path.endswith("/infer") else {}
    assert says in v2_error(method(path, **kwargs), 404)
    assert stand_in(v2_api).items == []


def test_production_inference_equals_predict(v2_api: Api) -> None:
    rows = records(60)
    response = infer(v2_api, json_body(rows, id="req-7"))
    body = response.json()
    assert (body["model_name"], body["model_version"], body["id"]) == ("death_yn", "v1", "req-7")
    outputs = outputs_of(response)
    predicted = v2_api.client.post("/predict", json={"records": rows}).json()["predictions"]
    assert outputs["probability"] == [p["probability"] for p in predicted]
    assert outputs["label"] == [p["label"] for p in predicted]
    np.testing.assert_allclose(
        outputs["probability"], pipeline_probabilities(v2_api, "v1", rows), rtol=0, atol=1e-12
    )
    # production items keep the format they had before versions could be asked for
    assert [len(item) for item in stand_in(v2_api).items] == [2, 2]


def test_inference_by_a_given_version(v2_api: Api, other_run: TrainingRun) -> None:
    version = register_run(v2_api.registry, other_run, promote=False).version.version
    assert version == "v3"
    rows = records(40)
    response = infer(v2_api, json_body(rows), "/v2/models/death_yn/versions/v3/infer")
    assert response.json()["model_version"] == "v3"
    got = outputs_of(response)["probability"]
    np.testing.assert_allclose(got, pipeline_probabilities(v2_api, "v3", rows), rtol=0, atol=1e-12)
    assert np.abs(np.array(got) - pipeline_probabilities(v2_api, "v1", rows)).max() > 1e-3
    assert stand_in(v2_api).items[-1][-1] == "v3"
    # the production version by name is production's model
    response = infer(v2_api, json_body(rows), "/v2/models/death_yn/versions/v1/infer")
    assert (
        outputs_of(response)["probability"]
        == outputs_of(infer(v2_api, json_body(rows)))["probability"]
    )


def test_a_bad_tensor_is_a_400_naming_it(v2_api: Api) -> None:
    body = json_body(records(2))
    body["inputs"][1]["data"] = ["Male", "Martian"]
    message = v2_error(infer(v2_api, body), 400)
    assert "'sex'" in message and "'Martian'" in message
    message = v2_error(v2_api.client.post(INFER, content=b"[1, 2]"), 400)
    assert "request" in message
    assert stand_in(v2_api).items == []


def test_the_outputs_asked_for_are_the_outputs_answered(v2_api: Api) -> None:
    rows = records(3)
    response = infer(v2_api, json_body(rows, outputs=[{"name": "label"}]))
    assert list(outputs_of(response)) == ["label"]
    message = v2_error(infer(v2_api, json_body(rows, outputs=[{"name": "logit"}])), 400)
    assert "'logit'" in message


def test_the_real_clients_binary_request_and_answer(v2_api: Api) -> None:
    rows = records(30)
    wanted = [InferRequestedOutput("probability"), InferRequestedOutput("label")]  # binary
    body, json_size = InferenceServerClient.generate_request_body(triton_inputs(rows), wanted)
    response = v2_api.client.post(INFER, content=body, headers={HEADER_LENGTH: str(json_size)})
    assert response.status_code == 200, response.text
    header_length = int(response.headers[HEADER_LENGTH])
    result = InferenceServerClient.parse_response_body(
        response.content, header_length=header_length
    )
    plain = outputs_of(infer(v2_api, json_body(rows)))
    probabilities = result.as_numpy("probability")
    labels = result.as_numpy("label")
    assert probabilities is not None and labels is not None
    assert probabilities.tolist() == plain["probability"]
    assert [label.decode() for label in labels] == plain["label"]


def test_overload_is_shed_with_retry_after_before_the_body_is_read(v2_api: Api) -> None:
    stand_in(v2_api).full = OverloadedError("overloaded: 16 predictions are already waiting", 2)
    response = v2_api.client.post(INFER, content=b"not even JSON")
    assert "overloaded" in v2_error(response, 503)
    assert response.headers["retry-after"] == "2"


def test_no_production_model_is_a_503(make_v2_api: MakeApi) -> None:
    api = make_v2_api("empty")
    assert "train one first" in v2_error(infer(api, json_body(records(1))), 503)


def test_the_read_key_guards_inference_and_metadata_not_health(make_v2_api: MakeApi) -> None:
    api = make_v2_api(api_key="s3cret", api_key_required_for_reads=True)
    for response in (api.client.get("/v2/models/death_yn"), infer(api, json_body(records(1)))):
        assert "API key" in v2_error(response, 401)
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert infer(api, json_body(records(1)), headers={"X-API-Key": "s3cret"}).status_code == 200
    assert api.client.get("/v2/health/live").status_code == 200
    assert api.client.get("/v2/health/ready").status_code == 200


def test_the_body_limit_holds(make_v2_api: MakeApi) -> None:
    api = make_v2_api(max_json_body_bytes=300)
    assert "larger than the limit" in v2_error(infer(api, json_body(records(20))), 413)


def test_unmatched_v2_paths_are_v2_shaped_and_the_rest_of_the_api_is_not(v2_api: Api) -> None:
    assert "not found" in v2_error(v2_api.client.get("/v2/nothing/here"), 404).lower()
    response = v2_api.client.get(INFER)
    v2_error(response, 405)
    assert "POST" in response.headers["allow"]
    assert_error(v2_api.client.post("/predict", json={"records": []}), 422, "validation_error")
    assert_error(v2_api.client.get("/models/v9"), 404, "version_not_found")


def test_the_projects_openapi_document_stays_as_it_was(v2_api: Api) -> None:
    paths = v2_api.client.get("/openapi.json").json()["paths"]
    assert paths and not [path for path in paths if path.startswith("/v2")]


def test_urls_are_built_for_both_apis(v2_api: Api) -> None:
    app: Any = v2_api.client.app
    assert app.url_path_for("infer_version", model_name="death_yn", version="v1") == (
        "/v2/models/death_yn/versions/v1/infer"
    )
    job_id = "0" * 32
    assert app.url_path_for("get_job", job_id=job_id) == f"/jobs/{job_id}"
    assert v2_api.client.post("/train", json={}).status_code == 202  # its Location is built so
