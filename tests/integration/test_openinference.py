"""The Open Inference Protocol against the real stack (Redis, workers, uvicorn), spoken by a
real third-party client: Triton's ``tritonclient.http`` (binary tensors by default)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from tritonclient.http import InferenceServerClient, InferInput, InferRequestedOutput
from tritonclient.utils import InferenceServerException

from cli.stack import LocalStack
from shared.data.schema import FEATURE_COLUMNS, VOCABULARY
from shared.model.scoring import Scorer
from shared.registry.versions import ModelRegistry
from tests.integration.conftest import train_and_wait, wait_until

pytestmark = pytest.mark.integration

MODEL = "death_yn"


def records(n: int) -> list[dict[str, str]]:
    rng = np.random.default_rng(n)
    return [{c: str(rng.choice(VOCABULARY[c])) for c in FEATURE_COLUMNS} for _ in range(n)]


def inputs(rows: list[dict[str, str]], binary: bool = True) -> list[InferInput]:
    tensors = []
    for column in FEATURE_COLUMNS:
        tensor = InferInput(column, [len(rows)], "BYTES")
        values = np.array([r[column].encode() for r in rows], dtype=np.object_)
        tensors.append(tensor.set_data_from_numpy(values, binary_data=binary))
    return tensors


def codes(rows: list[dict[str, str]]) -> np.ndarray:
    return np.array(
        [[VOCABULARY[c].index(r[c]) for c in FEATURE_COLUMNS] for r in rows], dtype=np.int8
    )


@pytest.fixture(scope="module")
def triton(stack: LocalStack) -> Iterator[InferenceServerClient]:
    client = InferenceServerClient(url=stack.base_url.removeprefix("http://"))
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="module")
def versions(stack: LocalStack) -> tuple[str, str]:
    """(production, an older version unlike it): two trainings on this module's stack, the
    older one with a stronger regularisation so that the two versions' probabilities differ,
    and never promoted, so that it can be deleted."""
    with httpx.Client(base_url=stack.base_url, timeout=10) as http:
        trained = []
        for body in ({"params": {"C": 0.01}, "promote": False}, {}):
            job = train_and_wait(http, body)
            assert job["status"] == "succeeded", job
            assert job["result"]["promoted"] is body.get("promote", True), job
            trained.append(job["result"]["version"])
        assert http.get("/models").json()["production"] == trained[1]

        def served() -> bool:
            answer = http.post("/predict", json={"records": records(1)}).json()
            return bool(answer.get("model_version") == trained[1])

        wait_until(served, timeout=10, message=f"the worker to serve {trained[1]}")
    return trained[1], trained[0]


def test_health_and_metadata(triton: InferenceServerClient, versions: tuple[str, str]) -> None:
    assert triton.is_server_live()
    assert triton.is_server_ready()
    assert triton.is_model_ready(MODEL)
    assert triton.is_model_ready(MODEL, versions[1])
    assert not triton.is_model_ready(MODEL, "v999")
    assert "binary_tensor_data" in triton.get_server_metadata()["extensions"]
    metadata = triton.get_model_metadata(MODEL)
    assert [(i["name"], i["datatype"]) for i in metadata["inputs"]] == [
        (c, "BYTES") for c in FEATURE_COLUMNS
    ]
    assert [(o["name"], o["datatype"]) for o in metadata["outputs"]] == [
        ("probability", "FP64"),
        ("label", "BYTES"),
    ]
    assert set(versions) <= set(metadata["versions"])


def test_production_inference_equals_predict(
    stack: LocalStack, triton: InferenceServerClient, versions: tuple[str, str]
) -> None:
    rows = records(50)
    with httpx.Client(base_url=stack.base_url, timeout=10) as http:
        predicted = http.post("/predict", json={"records": rows}).json()
    assert predicted["model_version"] == versions[0]
    want = [p["probability"] for p in predicted["predictions"]]
    labels = [p["label"] for p in predicted["predictions"]]
    for binary in (True, False):  # the client's default (binary both ways), then JSON
        wanted = (
            None
            if binary
            else [InferRequestedOutput(n, binary_data=False) for n in ("probability", "label")]
        )
        result = triton.infer(MODEL, inputs(rows, binary), outputs=wanted, request_id="r1")
        answer = result.get_response()
        assert (answer["model_version"], answer["id"]) == (versions[0], "r1")
        probabilities = result.as_numpy("probability")
        assert probabilities is not None
        assert probabilities.tolist() == want  # the same workers, the same table: exactly
        got_labels = result.as_numpy("label")
        assert got_labels is not None
        assert [v.decode() if isinstance(v, bytes) else v for v in got_labels] == labels


def test_inference_by_an_older_version(
    stack: LocalStack, triton: InferenceServerClient, versions: tuple[str, str]
) -> None:
    older = versions[1]
    rows = records(30)
    result = triton.infer(MODEL, inputs(rows), model_version=older)
    assert result.get_response()["model_version"] == older
    registry = ModelRegistry(stack.models_dir)
    expected = Scorer(older, registry.load(older)).predict_proba(codes(rows))
    probabilities = result.as_numpy("probability")
    assert probabilities is not None
    np.testing.assert_array_equal(probabilities, expected)
    current = triton.infer(MODEL, inputs(rows)).as_numpy("probability")
    assert current is not None and not np.array_equal(current, probabilities)


def test_an_unknown_version_is_a_404_the_client_raises(
    triton: InferenceServerClient, versions: tuple[str, str]
) -> None:
    with pytest.raises(InferenceServerException) as caught:
        triton.infer(MODEL, inputs(records(1)), model_version="v999")
    assert caught.value.status() == "404"
    assert "model version 'v999' not found" in caught.value.message()


def test_a_bad_tensor_is_a_400_naming_it(
    triton: InferenceServerClient, versions: tuple[str, str]
) -> None:
    rows = records(2)
    rows[1]["icu_yn"] = "Perhaps"
    with pytest.raises(InferenceServerException) as caught:
        triton.infer(MODEL, inputs(rows))
    assert caught.value.status() == "400"
    assert "input tensor 'icu_yn'" in caught.value.message()
    assert "'Perhaps'" in caught.value.message()


def test_a_deleted_version_leaves_the_workers_cache(
    stack: LocalStack, triton: InferenceServerClient, versions: tuple[str, str]
) -> None:
    """``DELETE /models/{v}`` unlists the version and announces it: the worker drops the
    version it held. Last in this module: it deletes the older version."""
    older = versions[1]
    triton.infer(MODEL, inputs(records(1)), model_version=older)  # held by the worker now
    with httpx.Client(base_url=stack.base_url, timeout=10) as http:
        deleted = http.delete(f"/models/{older}")
    assert deleted.status_code == 200, deleted.text
    worker = stack.processes["worker-prediction"]
    wait_until(
        lambda: (
            f"version cache: dropped {older} (no longer in the registry)" in worker.log_tail(2_000)
        ),
        timeout=10,
        message="the prediction worker to drop the deleted version",
    )
    with pytest.raises(InferenceServerException) as caught:
        triton.infer(MODEL, inputs(records(1)), model_version=older)
    assert caught.value.status() == "404"
