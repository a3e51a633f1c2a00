"""Tensors of the Open Inference Protocol to the project's feature codes, and predictions back
to tensors, with Triton's binary tensor extension both ways.

The model's inputs are the seven feature columns, each a ``BYTES`` tensor of shape ``[n]``
whose elements are CDC's strings (the values ``POST /predict`` accepts); its outputs are
``probability`` (``FP64``, ``[n]``) and ``label`` (``BYTES``, ``[n]``).

**The binary tensor extension** (``binary_tensor_data``, what ``tritonclient`` sends by
default): the body is the JSON request, ``Inference-Header-Content-Length`` bytes long,
followed by the raw data of every input whose ``parameters`` carry ``binary_data_size``, in
the order of ``inputs``. A raw ``BYTES`` tensor is its elements one after the other, each a
4-byte little-endian length and then its bytes; a raw ``FP64`` tensor is little-endian
doubles. Outputs are sent raw the same way when asked (the output's ``binary_data``
parameter, or the request's ``binary_data_output``), after a JSON header whose length the
answer's ``Inference-Header-Content-Length`` gives; otherwise in the JSON.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from pydantic import ValidationError

from api.openinference.errors import InvalidTensorError
from api.openinference.schemas import InferRequest, MetadataTensor, RequestInput
from shared.data.schema import FEATURE_COLUMNS, NO, VOCABULARY, YES
from shared.model.evaluation import THRESHOLD

__all__ = [
    "HEADER_LENGTH",
    "INPUTS",
    "OUTPUTS",
    "Decoded",
    "ParsedRequest",
    "decode_inputs",
    "decode_request",
    "encode_response",
    "parse_request",
    "requested_outputs",
    "serialize_bytes",
]

#: The header that says how long the JSON part of a body is (when binary data follows it).
HEADER_LENGTH = "Inference-Header-Content-Length"
BYTES, FP64 = "BYTES", "FP64"
PROBABILITY, LABEL = "probability", "label"
#: The model's tensors, as its metadata describes them (-1: any number of records).
INPUTS = tuple(MetadataTensor(name=c, datatype=BYTES, shape=[-1]) for c in FEATURE_COLUMNS)
OUTPUTS = (
    MetadataTensor(name=PROBABILITY, datatype=FP64, shape=[-1]),
    MetadataTensor(name=LABEL, datatype=BYTES, shape=[-1]),
)
_OUTPUT_NAMES = tuple(tensor.name for tensor in OUTPUTS)
_BINARY_SIZE = "binary_data_size"
_LENGTH = struct.Struct("<I")
#: CDC string -> code, per feature column; the same strings as UTF-8 bytes, for binary data.
_CODES = {c: {value: code for code, value in enumerate(VOCABULARY[c])} for c in FEATURE_COLUMNS}
_BYTE_CODES = {c: {v.encode(): code for v, code in _CODES[c].items()} for c in FEATURE_COLUMNS}
_RAW_LABEL = {
    True: _LENGTH.pack(len(YES)) + YES.encode(),
    False: _LENGTH.pack(len(NO)) + NO.encode(),
}


@dataclass(frozen=True)
class ParsedRequest:
    request: InferRequest
    #: The binary part of the body (empty without the extension).
    binary: bytes


def _field(loc: tuple[Any, ...], request: Any) -> str:
    """``("inputs", 2, "datatype")`` -> ``inputs[2] ('sex').datatype``: the tensor by name."""
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int) and not parts:
            parts.append(f"[{part}]")
        elif isinstance(part, int):
            parts[-1] += f"[{part}]"
            if parts[-1].startswith("inputs[") and len(parts) == 1:
                try:
                    name = request["inputs"][part]["name"]
                except (KeyError, IndexError, TypeError):
                    continue
                if isinstance(name, str):
                    parts[-1] += f" ({name!r})"
        else:
            parts.append(str(part))
    return ".".join(parts) or "request"


def _split(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """The JSON part of ``body``, and the binary part after it (empty without the header)."""
    if header_length is None:
        return body, b""
    if not header_length.isdigit() or int(header_length) > len(body):
        raise InvalidTensorError(
            f"{HEADER_LENGTH}: {header_length!r} is not a length within the body's "
            f"{len(body)} bytes"
        )
    return body[: int(header_length)], body[int(header_length) :]


def _load(json_part: bytes) -> Any:
    try:
        return orjson.loads(json_part)
    except orjson.JSONDecodeError as exc:
        raise InvalidTensorError(f"the request is not valid JSON: {exc}") from None


def _validated(data: Any) -> InferRequest:
    try:
        return InferRequest.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        field = _field(tuple(first["loc"]), data)
        raise InvalidTensorError(f"{field}: {first['msg']}{more}") from None


def parse_request(body: bytes, header_length: str | None) -> ParsedRequest:
    """The request object and the binary part of ``body``."""
    json_part, binary = _split(body, header_length)
    return ParsedRequest(_validated(_load(json_part)), binary)


def _binary_size(tensor: RequestInput) -> int | None:
    parameters = tensor.parameters or {}
    unknown = sorted(set(parameters) - {_BINARY_SIZE})
    if unknown:
        raise InvalidTensorError(
            f"input tensor {tensor.name!r}: parameter {unknown[0]!r} is not supported (only "
            f"{_BINARY_SIZE!r}, of the binary tensor extension)"
        )
    size = parameters.get(_BINARY_SIZE)
    if size is not None and (type(size) is not int or size < 0):
        raise InvalidTensorError(
            f"input tensor {tensor.name!r}: {_BINARY_SIZE} must be a non-negative integer"
        )
    return size


def deserialize_bytes(raw: bytes, count: int, tensor: str) -> list[bytes]:
    """The ``count`` elements of a raw ``BYTES`` tensor, which must be exactly ``raw``."""
    elements, offset = [], 0
    for index in range(count):
        if offset + 4 > len(raw):
            raise InvalidTensorError(
                f"input tensor {tensor!r}: its binary data ends before element {index} "
                f"(shape says {count})"
            )
        (length,) = _LENGTH.unpack_from(raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise InvalidTensorError(
                f"input tensor {tensor!r}: element {index} runs past its binary data"
            )
        elements.append(raw[offset : offset + length])
        offset += length
    if offset != len(raw):
        raise InvalidTensorError(
            f"input tensor {tensor!r}: {len(raw) - offset} bytes of binary data are left after "
            f"its {count} elements"
        )
    return elements


def serialize_bytes(values: list[bytes]) -> bytes:
    """A raw ``BYTES`` tensor: each element's 4-byte little-endian length, then its bytes."""
    return b"".join(_LENGTH.pack(len(value)) + value for value in values)


def _shape(tensor: RequestInput) -> int:
    if tensor.datatype != BYTES:
        raise InvalidTensorError(
            f"input tensor {tensor.name!r}: datatype must be {BYTES} (CDC's strings), "
            f"not {tensor.datatype!r}"
        )
    if len(tensor.shape) != 1 or tensor.shape[0] < 1:
        raise InvalidTensorError(
            f"input tensor {tensor.name!r}: shape must be [n] with n >= 1 records, "
            f"not {tensor.shape}"
        )
    return tensor.shape[0]


def _codes_of(column: str, values: list[Any], raw: bool) -> list[int]:
    table: dict[Any, int] = _BYTE_CODES[column] if raw else _CODES[column]
    try:
        return [table[value] for value in values]
    except (KeyError, TypeError):
        pass
    for index, value in enumerate(values):
        if not isinstance(value, bytes | str) or value not in table:
            shown = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
            raise InvalidTensorError(
                f"input tensor {column!r}: element {index} ({shown!r}) is not one of CDC's "
                f"values for {column}: {', '.join(VOCABULARY[column])}"
            ) from None
    raise AssertionError("unreachable")  # pragma: no cover


def decode_inputs(parsed: ParsedRequest, max_records: int) -> np.ndarray:
    """The (n, 7) int8 code array the workers score, from the seven input tensors; every
    refusal names the tensor."""
    by_name: dict[str, RequestInput] = {}
    for tensor in parsed.request.inputs:
        if tensor.name not in _CODES:
            raise InvalidTensorError(
                f"input tensor {tensor.name!r} is not an input of this model; its inputs are "
                f"{', '.join(FEATURE_COLUMNS)}"
            )
        if tensor.name in by_name:
            raise InvalidTensorError(f"input tensor {tensor.name!r} is given twice")
        by_name[tensor.name] = tensor
    missing = [column for column in FEATURE_COLUMNS if column not in by_name]
    if missing:
        raise InvalidTensorError(
            f"input tensor {missing[0]!r} is missing: every one of the seven is required "
            f"({', '.join(FEATURE_COLUMNS)})"
        )
    # The binary part is cut in the order of ``inputs``, as the extension says.
    raw_data: dict[str, bytes] = {}
    offset = 0
    for tensor in parsed.request.inputs:
        size = _binary_size(tensor)
        if size is None:
            if tensor.data is None:
                raise InvalidTensorError(
                    f"input tensor {tensor.name!r} has no data (and no {_BINARY_SIZE})"
                )
            continue
        if tensor.data is not None:
            raise InvalidTensorError(
                f"input tensor {tensor.name!r} has both data and {_BINARY_SIZE}"
            )
        raw_data[tensor.name] = parsed.binary[offset : offset + size]
        offset += size
    if offset != len(parsed.binary):
        raise InvalidTensorError(
            f"the binary part of the body is {len(parsed.binary)} bytes, but the inputs' "
            f"{_BINARY_SIZE} add up to {offset}"
        )
    count = None
    columns = []
    for column in FEATURE_COLUMNS:
        tensor = by_name[column]
        n = _shape(tensor)
        if count is None:
            count = n
            if n > max_records:
                raise InvalidTensorError(
                    f"input tensor {column!r}: {n} records, more than the {max_records} "
                    "one request may carry"
                )
        elif n != count:
            raise InvalidTensorError(
                f"input tensor {column!r}: shape [{n}], but {FEATURE_COLUMNS[0]!r} has "
                f"[{count}]: every input needs the same number of records"
            )
        raw = column in raw_data
        values: list[Any] = (
            deserialize_bytes(raw_data[column], n, column) if raw else list(tensor.data or ())
        )
        if len(values) != n:
            raise InvalidTensorError(
                f"input tensor {column!r}: {len(values)} elements for shape [{n}]"
            )
        columns.append(_codes_of(column, values, raw))
    return np.ascontiguousarray(np.array(columns, dtype=np.int8).T)


def requested_outputs(request: InferRequest) -> list[tuple[str, bool]]:
    """The outputs to answer, in order, each with whether it goes raw (binary)."""
    parameters = request.parameters or {}
    binary_default = parameters.get("binary_data_output", False)
    if type(binary_default) is not bool:
        raise InvalidTensorError("parameters.binary_data_output must be a boolean")
    if request.outputs is None:
        return [(name, binary_default) for name in _OUTPUT_NAMES]
    chosen: list[tuple[str, bool]] = []
    for index, output in enumerate(request.outputs):
        if output.name not in _OUTPUT_NAMES:
            raise InvalidTensorError(
                f"outputs[{index}]: {output.name!r} is not an output of this model; its outputs "
                f"are {', '.join(_OUTPUT_NAMES)}"
            )
        if any(name == output.name for name, _ in chosen):
            raise InvalidTensorError(f"outputs[{index}]: {output.name!r} is requested twice")
        options = output.parameters or {}
        unknown = sorted(set(options) - {"binary_data"})
        if unknown:
            raise InvalidTensorError(
                f"outputs[{index}] ({output.name!r}): parameter {unknown[0]!r} is not supported "
                "(only 'binary_data')"
            )
        binary = options.get("binary_data", binary_default)
        if type(binary) is not bool:
            raise InvalidTensorError(
                f"outputs[{index}] ({output.name!r}): binary_data must be a boolean"
            )
        chosen.append((output.name, binary))
    return chosen


@dataclass(frozen=True)
class Decoded:
    """What inference needs from a request."""

    codes: np.ndarray
    request_id: str | None
    #: (output name, sent raw), in the order to answer them.
    outputs: list[tuple[str, bool]]


def decode_request(body: bytes, header_length: str | None, max_records: int) -> Decoded:
    """A request body (with the binary part the header announces) as feature codes, its id and
    the outputs it wants. Valid requests (the common case) take a fast path of dict lookups on
    the parsed JSON; anything else is validated by the protocol's pydantic models and the
    checks above, whose refusals name the tensor or field."""
    json_part, binary = _split(body, header_length)
    data = _load(json_part)
    decoded = _fast_decode(data, binary, max_records)
    if decoded is not None:
        return decoded
    parsed = ParsedRequest(_validated(data), binary)
    codes = decode_inputs(parsed, max_records)
    return Decoded(codes, parsed.request.id, requested_outputs(parsed.request))


_INDEX = {column: j for j, column in enumerate(FEATURE_COLUMNS)}
_TABLES = tuple(_CODES[c] for c in FEATURE_COLUMNS)
_BYTE_TABLES = tuple(_BYTE_CODES[c] for c in FEATURE_COLUMNS)


def _split_raw(raw: bytes, count: int) -> list[bytes] | None:
    """:func:`deserialize_bytes` for the fast path: None instead of an error."""
    elements, offset, unpack = [], 0, _LENGTH.unpack_from
    try:
        for _ in range(count):
            (length,) = unpack(raw, offset)
            offset += 4 + length
            elements.append(raw[offset - length : offset])
    except struct.error:
        return None
    return elements if offset == len(raw) else None


def _fast_outputs(data: dict[str, Any]) -> list[tuple[str, bool]] | None:
    """:func:`requested_outputs`' rules, None where it would refuse (or look closer)."""
    parameters = data.get("parameters")
    binary_default: Any = False
    if parameters is not None:
        if type(parameters) is not dict:
            return None
        binary_default = parameters.get("binary_data_output", False)
        if type(binary_default) is not bool:
            return None
    outputs = data.get("outputs")
    if outputs is None:
        return [(name, binary_default) for name in _OUTPUT_NAMES]
    if type(outputs) is not list:
        return None
    chosen: list[tuple[str, bool]] = []
    for output in outputs:
        if type(output) is not dict:
            return None
        name = output.get("name")
        if name not in _OUTPUT_NAMES or any(name == taken for taken, _ in chosen):
            return None
        options = output.get("parameters")
        binary = binary_default
        if options is not None:
            if type(options) is not dict or not options.keys() <= {"binary_data"}:
                return None
            binary = options.get("binary_data", binary_default)
            if type(binary) is not bool:
                return None
        chosen.append((name, binary))
    return chosen


def _fast_decode(data: Any, binary: bytes, max_records: int) -> Decoded | None:
    """The request's codes, id and outputs if it is valid, else None (then the slow path
    decides, and names what is wrong). Exactly the slow path's rules: the seven inputs once
    each, ``BYTES``, the same shape ``[n]`` with 1 <= n <= ``max_records``, n CDC strings each
    (in ``data``, or raw in the binary part, cut in the order of ``inputs``, which it must
    fill exactly), ``binary_data_size`` the only tensor parameter; a string ``id`` if any."""
    if type(data) is not dict:
        return None
    inputs = data.get("inputs")
    request_id = data.get("id")
    if type(inputs) is not list or len(inputs) != len(FEATURE_COLUMNS):
        return None
    if request_id is not None and type(request_id) is not str:
        return None
    outputs = _fast_outputs(data)
    if outputs is None:
        return None
    columns: list[list[int] | None] = [None] * len(FEATURE_COLUMNS)
    count, offset = 0, 0
    for tensor in inputs:
        if type(tensor) is not dict:
            return None
        name = tensor.get("name")
        j = _INDEX.get(name) if type(name) is str else None
        shape = tensor.get("shape")
        if j is None or columns[j] is not None or tensor.get("datatype") != BYTES:
            return None
        if type(shape) is not list or len(shape) != 1 or type(shape[0]) is not int:
            return None
        n = shape[0]
        if count == 0:
            if not 1 <= n <= max_records:
                return None
            count = n
        elif n != count:
            return None
        parameters = tensor.get("parameters")
        values = tensor.get("data")
        if parameters:  # None or {}: no binary data
            size = parameters.get(_BINARY_SIZE) if type(parameters) is dict else None
            if type(size) is not int or size < 0 or len(parameters) != 1 or values is not None:
                return None
            values = _split_raw(binary[offset : offset + size], n)
            offset += size
            table: dict[Any, int] = _BYTE_TABLES[j]
        else:
            table = _TABLES[j]
        if type(values) is not list or len(values) != n:
            return None
        try:
            columns[j] = [table[value] for value in values]
        except (KeyError, TypeError):
            return None
    if offset != len(binary):
        return None
    codes = np.ascontiguousarray(np.array(columns, dtype=np.int8).T)
    return Decoded(codes, request_id, outputs)


def encode_response(
    model_name: str,
    model_version: str,
    request_id: str | None,
    probabilities: list[float],
    outputs: list[tuple[str, bool]],
) -> tuple[bytes, dict[str, str]]:
    """The answer's body, and its headers: JSON alone, or a JSON header followed by the raw
    outputs (``Inference-Header-Content-Length``). Labels are ``POST /predict``'s."""
    n = len(probabilities)
    tensors: list[dict[str, Any]] = []
    raw_parts: list[bytes] = []
    for name, binary in outputs:
        tensor: dict[str, Any] = {"name": name, "datatype": FP64, "shape": [n]}
        if name == PROBABILITY:
            if binary:
                raw = np.asarray(probabilities, dtype="<f8").tobytes()
            else:
                tensor["data"] = probabilities
        else:
            tensor["datatype"] = BYTES
            positive = [p >= THRESHOLD for p in probabilities]
            if binary:
                raw = b"".join(_RAW_LABEL[p] for p in positive)
            else:
                tensor["data"] = [YES if p else NO for p in positive]
        if binary:
            tensor["parameters"] = {_BINARY_SIZE: len(raw)}
            raw_parts.append(raw)
        tensors.append(tensor)
    answer: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request_id is not None:
        answer["id"] = request_id
    answer["outputs"] = tensors
    header = orjson.dumps(answer)
    if not raw_parts:
        return header, {"content-type": "application/json"}
    return header + b"".join(raw_parts), {
        "content-type": "application/octet-stream",
        HEADER_LENGTH: str(len(header)),
    }
