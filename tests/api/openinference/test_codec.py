"""Tensors to feature codes and back, in JSON and in Triton's binary tensor format; the binary
bodies are made, and the binary answers read, by the real client library (tritonclient)."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import orjson
import pytest
from tritonclient.http import InferenceServerClient, InferInput, InferRequestedOutput

from api.openinference.codec import (
    HEADER_LENGTH,
    _fast_decode,
    decode_inputs,
    decode_request,
    deserialize_bytes,
    encode_response,
    parse_request,
    requested_outputs,
    serialize_bytes,
)
from api.openinference.errors import InvalidTensorError
from api.openinference.schemas import InferResponse
from api.routes.predict import encode_records
from api.schemas.predictions import CaseRecord
from shared.data.schema import FEATURE_COLUMNS, VOCABULARY


def records(n: int) -> list[dict[str, str]]:
    """Every value of every column occurs (each column cycles through its vocabulary)."""
    cycles = [itertools.cycle(VOCABULARY[c]) for c in FEATURE_COLUMNS]
    return [{c: next(cy) for c, cy in zip(FEATURE_COLUMNS, cycles, strict=True)} for _ in range(n)]


def json_body(rows: list[dict[str, str]], **extra: Any) -> dict[str, Any]:
    inputs = [
        {"name": c, "datatype": "BYTES", "shape": [len(rows)], "data": [r[c] for r in rows]}
        for c in FEATURE_COLUMNS
    ]
    return {"inputs": inputs, **extra}


def triton_inputs(rows: list[dict[str, str]], binary: bool = True) -> list[InferInput]:
    inputs = []
    for column in FEATURE_COLUMNS:
        tensor = InferInput(column, [len(rows)], "BYTES")
        values = np.array([r[column].encode() for r in rows], dtype=np.object_)
        tensor.set_data_from_numpy(values, binary_data=binary)
        inputs.append(tensor)
    return inputs


def decode(body: dict[str, Any] | bytes, header: str | None = None, limit: int = 10_000) -> Any:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return decode_inputs(parse_request(raw, header), limit)


def expected_codes(rows: list[dict[str, str]]) -> np.ndarray:
    return encode_records([CaseRecord(**r) for r in rows])  # /predict's own encoding


def test_json_tensors_encode_as_predict_does() -> None:
    rows = records(40)
    np.testing.assert_array_equal(decode(json_body(rows)), expected_codes(rows))


@pytest.mark.parametrize("binary", [True, False])
def test_the_real_clients_bodies_decode_the_same(binary: bool) -> None:
    rows = records(25)
    body, json_size = InferenceServerClient.generate_request_body(triton_inputs(rows, binary))
    header = None if json_size is None else str(json_size)
    assert (header is not None) == binary
    np.testing.assert_array_equal(decode(body, header), expected_codes(rows))


def test_binary_and_json_tensors_mix_in_one_request() -> None:
    rows = records(9)
    inputs = triton_inputs(rows, binary=True)
    for tensor in inputs[::2]:
        column = tensor.name()
        tensor.set_data_from_numpy(
            np.array([r[column].encode() for r in rows], dtype=np.object_), binary_data=False
        )
    body, json_size = InferenceServerClient.generate_request_body(inputs)
    np.testing.assert_array_equal(decode(body, str(json_size)), expected_codes(rows))


def test_bytes_elements_round_trip() -> None:
    values = [b"", b"Yes", b"Hispanic/Latino", bytes(300)]
    assert deserialize_bytes(serialize_bytes(values), 4, "t") == values


def _refusal(body: dict[str, Any] | bytes, header: str | None = None, limit: int = 10_000) -> str:
    with pytest.raises(InvalidTensorError) as caught:
        decode(body, header, limit)
    assert caught.value.status_code == 400
    return caught.value.message


def _with_input(rows: list[dict[str, str]], index: int, **changes: Any) -> dict[str, Any]:
    body = json_body(rows)
    body["inputs"][index].update(changes)
    return body


@pytest.mark.parametrize(
    ("change", "named", "says"),
    [
        ({"name": "height"}, "'height'", "is not an input of this model"),
        ({"datatype": "FP32"}, "'current_status'", "datatype must be BYTES"),
        ({"shape": [1, 2]}, "'current_status'", "shape must be [n]"),
        ({"shape": [0], "data": []}, "'current_status'", "n >= 1"),
        ({"data": ["Laboratory-confirmed case", "Martian"]}, "'current_status'", "element 1"),
        ({"data": ["Laboratory-confirmed case", 7]}, "'current_status'", "element 1 (7)"),
        ({"data": ["Laboratory-confirmed case"]}, "'current_status'", "1 elements for shape [2]"),
        ({"data": None}, "'current_status'", "has no data"),
        ({"parameters": {"shared_memory_region": "r"}}, "'current_status'", "not supported"),
        ({"shape": ["2"]}, "inputs[0] ('current_status').shape[0]", "valid integer"),
    ],
)
def test_a_bad_tensor_is_named(change: dict[str, Any], named: str, says: str) -> None:
    message = _refusal(_with_input(records(2), 0, **change))
    assert named in message and says in message, message


def test_missing_duplicate_and_mismatched_tensors_are_named() -> None:
    rows = records(2)
    body = json_body(rows)
    del body["inputs"][3]
    assert "'race_ethnicity_combined' is missing" in _refusal(body)
    body = json_body(rows)
    body["inputs"].append(body["inputs"][1])
    assert "'sex' is given twice" in _refusal(body)
    body = _with_input(rows, 4, shape=[1], data=["Yes"])
    assert "'hosp_yn': shape [1]" in _refusal(body)


def test_the_record_limit_is_predicts() -> None:
    assert "more than the 3" in _refusal(json_body(records(4)), limit=3)


def test_binary_data_must_add_up() -> None:
    rows = records(3)
    body, json_size = InferenceServerClient.generate_request_body(triton_inputs(rows))
    assert "add up to" in _refusal(body + b"\x00", str(json_size))
    assert HEADER_LENGTH in _refusal(body, str(len(body) + 1))
    assert "not valid JSON" in _refusal(body, None)  # binary data read as JSON


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"\x64\x00\x00\x00Probable Case", "element 0 runs past"),  # says 100 bytes
        (serialize_bytes([b"Probable Case", b"Missing"]) + b"\x01\x00", "ends before element 2"),
        (serialize_bytes([b"Missing"] * 4), "are left after"),
    ],
)
def test_a_malformed_binary_tensor_is_named(raw: bytes, says: str) -> None:
    """Sizes that add up, contents that do not fit the shape ([3])."""
    rows = records(3)
    body = json_body(rows)
    del body["inputs"][0]["data"]
    body["inputs"][0]["parameters"] = {"binary_data_size": len(raw)}
    header = orjson.dumps(body)
    message = _refusal(header + raw, str(len(header)))
    assert "'current_status'" in message and says in message, message


def test_the_body_must_be_an_inference_request() -> None:
    assert "not valid JSON" in _refusal(b"{")
    assert "inputs" in _refusal({"id": "x"})
    assert "id" in _refusal({**json_body(records(1)), "id": 5})


def test_outputs_asked_for_by_name_and_format() -> None:
    def parsed(body: dict[str, Any]) -> Any:
        return parse_request(orjson.dumps(body), None).request

    rows = records(1)
    assert requested_outputs(parsed(json_body(rows))) == [
        ("probability", False),
        ("label", False),
    ]
    assert requested_outputs(parsed(json_body(rows, parameters={"binary_data_output": True}))) == [
        ("probability", True),
        ("label", True),
    ]
    wanted = json_body(rows, outputs=[{"name": "label", "parameters": {"binary_data": False}}])
    assert requested_outputs(parsed(wanted)) == [("label", False)]
    for outputs, says in [
        ([{"name": "logit"}], "'logit' is not an output"),
        ([{"name": "label"}, {"name": "label"}], "requested twice"),
        ([{"name": "label", "parameters": {"classification": 2}}], "'classification'"),
        ([{"name": "label", "parameters": {"binary_data": "yes"}}], "must be a boolean"),
    ]:
        with pytest.raises(InvalidTensorError, match="outputs\\[") as caught:
            requested_outputs(parsed(json_body(rows, outputs=outputs)))
        assert says in caught.value.message


PROBABILITIES = [0.01, 0.5, 0.97, 0.4999999999]


def test_a_json_answer() -> None:
    outputs = [("probability", False), ("label", False)]
    body, headers = encode_response("death_yn", "v3", "req-1", PROBABILITIES, outputs)
    assert headers == {"content-type": "application/json"}
    answer = InferResponse.model_validate_json(body)
    assert (answer.model_name, answer.model_version, answer.id) == ("death_yn", "v3", "req-1")
    probability, label = answer.outputs
    assert (probability.datatype, probability.shape, probability.data) == (
        "FP64",
        [4],
        PROBABILITIES,
    )
    assert (label.datatype, label.data) == ("BYTES", ["No", "Yes", "Yes", "No"])


def test_a_binary_answer_reads_back_in_the_real_client() -> None:
    outputs = [("label", True), ("probability", True)]
    body, headers = encode_response("death_yn", "v3", None, PROBABILITIES, outputs)
    assert headers["content-type"] == "application/octet-stream"
    result = InferenceServerClient.parse_response_body(
        body, header_length=int(headers[HEADER_LENGTH])
    )
    InferResponse.model_validate(result.get_response())
    probabilities = result.as_numpy("probability")
    assert probabilities is not None and probabilities.dtype == np.float64
    np.testing.assert_array_equal(probabilities, PROBABILITIES)
    labels = result.as_numpy("label")
    assert labels is not None and [v.decode() for v in labels] == ["No", "Yes", "Yes", "No"]


def test_requested_outputs_through_the_real_client() -> None:
    """What tritonclient asks for (binary by default, per output) is what comes back."""
    rows = records(2)
    wanted = [InferRequestedOutput("label", binary_data=False)]
    body, _ = InferenceServerClient.generate_request_body(triton_inputs(rows, False), wanted)
    outputs = requested_outputs(parse_request(body, None).request)
    assert outputs == [("label", False)]
    body, _ = InferenceServerClient.generate_request_body(triton_inputs(rows, False))
    assert requested_outputs(parse_request(body, None).request) == [
        ("probability", True),
        ("label", True),
    ]


def _both_ways(body: bytes, header: str | None) -> Any:
    """The fast path's answer, checked against the slow path's (the pydantic models)."""
    json_part, binary = (
        (body, b"") if header is None else (body[: int(header)], body[int(header) :])
    )
    fast = _fast_decode(orjson.loads(json_part), binary, 10_000)
    parsed = parse_request(body, header)
    assert fast is not None, "a valid request missed the fast path"
    np.testing.assert_array_equal(fast.codes, decode_inputs(parsed, 10_000))
    assert fast.codes.flags["C_CONTIGUOUS"] and fast.codes.dtype == np.int8
    assert fast.request_id == parsed.request.id
    assert fast.outputs == requested_outputs(parsed.request)
    return fast


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize(
    "outputs",
    [None, [InferRequestedOutput("label")], [InferRequestedOutput("probability", False)]],
)
def test_the_fast_path_decodes_what_the_models_do(binary: bool, outputs: Any) -> None:
    rows = records(12)
    body, size = InferenceServerClient.generate_request_body(
        triton_inputs(rows, binary), outputs, request_id="q"
    )
    fast = _both_ways(body, None if size is None else str(size))
    np.testing.assert_array_equal(fast.codes, expected_codes(rows))
    decoded = decode_request(body, None if size is None else str(size), 10_000)
    np.testing.assert_array_equal(decoded.codes, fast.codes)


@pytest.mark.parametrize(
    "body",
    [
        _with_input(records(2), 0, name="height"),
        _with_input(records(2), 0, datatype="FP32"),
        _with_input(records(2), 0, shape=[1, 2]),
        _with_input(records(2), 0, shape=[True]),
        _with_input(records(2), 0, data=["Laboratory-confirmed case", "Martian"]),
        _with_input(records(2), 0, data=None),
        _with_input(records(2), 0, parameters={"binary_data_size": 0}),
        _with_input(records(2), 0, parameters={"shared_memory_region": "r"}),
        _with_input(records(2), 6, shape=[1], data=["Yes"]),
        {**json_body(records(2)), "id": 5},
        {**json_body(records(2)), "parameters": {"binary_data_output": 1}},
        {**json_body(records(2)), "outputs": [{"name": "label"}, {"name": "label"}]},
        {**json_body(records(2)), "outputs": [{"name": "label", "parameters": {"x": 1}}]},
        {"inputs": json_body(records(2))["inputs"][:6]},
        {"inputs": [*json_body(records(2))["inputs"][:6], json_body(records(2))["inputs"][0]]},
    ],
)
def test_what_the_fast_path_refuses_the_slow_path_names(body: dict[str, Any]) -> None:
    assert _fast_decode(body, b"", 10_000) is None
    with pytest.raises(InvalidTensorError):
        decode_request(orjson.dumps(body), None, 10_000)


def test_the_fast_path_keeps_the_record_limit_and_the_binary_sizes() -> None:
    assert _fast_decode(json_body(records(4)), b"", 3) is None
    rows = records(3)
    body, size = InferenceServerClient.generate_request_body(triton_inputs(rows))
    header = orjson.loads(body[:size])
    assert _fast_decode(header, body[size:] + b"\x00", 10_000) is None
    assert _fast_decode(header, body[size:-1], 10_000) is None
