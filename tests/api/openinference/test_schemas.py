"""The protocol's objects: strict about types, tolerant of fields extensions add."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from api.openinference.schemas import InferRequest, Readiness


def _input(**changes: object) -> dict[str, object]:
    return {"name": "sex", "datatype": "BYTES", "shape": [1], "data": ["Male"], **changes}


def test_a_request_needs_inputs() -> None:
    with pytest.raises(ValidationError, match="inputs"):
        InferRequest.model_validate({"id": "1"})
    with pytest.raises(ValidationError, match="at least 1"):
        InferRequest.model_validate({"inputs": []})


@pytest.mark.parametrize(
    "bad",
    [_input(shape=["1"]), _input(shape=[1.5]), _input(name=3), _input(data="Male")],
)
def test_types_are_not_coerced(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        InferRequest.model_validate({"inputs": [bad]})


def test_unknown_fields_are_ignored_and_binary_inputs_carry_no_data() -> None:
    request = InferRequest.model_validate(
        {
            "inputs": [_input(data=None, parameters={"binary_data_size": 8}, extension=1)],
            "sequence": 2,
        }
    )
    assert request.inputs[0].data is None
    assert request.inputs[0].parameters == {"binary_data_size": 8}


def test_readiness_says_why_only_when_not_ready() -> None:
    assert Readiness(ready=True).model_dump(exclude_none=True) == {"ready": True}
    assert Readiness(ready=False, error="no worker").model_dump(exclude_none=True) == {
        "ready": False,
        "error": "no worker",
    }
