"""What every body shares: strict request models, JSON integers, the error body."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

#: The largest integer every JSON client reads exactly (a double's 53 bits): bounds beyond it
#: would mean different numbers to different clients.
MAX_JSON_INT = 2**53 - 1

# What the server's stores accept, so the schema says exactly which strings are valid: a request
# the schema allows is never refused for its form (tests/api/test_main.py ties each pattern to
# the store's own check). The patterns are the stores' own: JOB_ID_PATTERN, VERSION_PATTERN and
# DATASET_NAME_PATTERN.
DATASET_NAME_MAX_LENGTH = 132


def integral(value: Any) -> Any:
    """JSON has numbers, not ints and floats: ``5.0`` is the integer 5 (as JSON Schema says)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


#: An integer as JSON Schema means it: ``5`` or ``5.0``, never ``"5"``, ``true`` or ``5.5``.
JsonInt = Annotated[int, BeforeValidator(integral)]


class StrictModel(BaseModel):
    """Request bodies refuse unknown fields: a typo such as ``"c"`` for ``"C"`` must not be
    silently ignored and trained with the default. And they take exactly the JSON types the
    schema names: no ``"5"`` for an integer, no ``0`` or ``"yes"`` for a boolean (an integer
    is still a number)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class ErrorInfo(BaseModel):
    code: str = Field(description="Stable machine-readable error code.")
    message: str = Field(description="What went wrong, for a person.")
    details: Any = Field(None, description="Structured context (fields, allowed values...).")
    request_id: str = Field(description="Also in the X-Request-ID response header.")


class ErrorResponse(BaseModel):
    """The one shape of every error the API answers."""

    error: ErrorInfo
