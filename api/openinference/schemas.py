"""The protocol's JSON objects (KServe's Open Inference Protocol, REST), as pydantic models.

Field names are the protocol's. Requests are checked strictly (a shape is a list of integers,
not of strings that look like them); fields the protocol does not know are ignored, as its
extensions add some.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

#: The protocol's datatypes this server uses: categories travel as BYTES, probabilities as FP64.
Datatype = Literal["BYTES", "FP64"]


class _Request(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class ServerMetadata(BaseModel):
    name: str
    version: str
    #: Protocol extensions supported: ``binary_tensor_data`` (Triton's binary tensor format).
    extensions: list[str]


class Liveness(BaseModel):
    live: bool


class Readiness(BaseModel):
    ready: bool
    #: When not ready: what is missing (the protocol only asks for the status code).
    error: str | None = None


class MetadataTensor(BaseModel):
    name: str
    datatype: Datatype
    #: -1: any size along that axis.
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[MetadataTensor]
    outputs: list[MetadataTensor]


class RequestInput(_Request):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    #: Absent when the tensor travels in the binary part of the body (``binary_data_size``).
    data: list[Any] | None = None


class RequestOutput(_Request):
    name: str
    parameters: dict[str, Any] | None = None


class InferRequest(_Request):
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[RequestInput] = Field(min_length=1)
    #: Absent: every output.
    outputs: list[RequestOutput] | None = None


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: Datatype
    #: ``{"binary_data_size": n}`` when the tensor travels in the binary part of the body.
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class InferResponse(BaseModel):
    model_name: str
    #: The registry version that computed the outputs.
    model_version: str
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[ResponseOutput]


class ErrorResponse(BaseModel):
    """Every error under ``/v2``: the protocol's shape, a message naming the tensor or field."""

    error: str
