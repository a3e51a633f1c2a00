"""Path parameters as OpenAPI documents them, and the OpenAPI links between operations.

A job id and a model version have a documented pattern (what the stores accept), and nothing a
client sends is refused for not matching it beyond what the stores do anyway: a string that no
job or version can have is a ``404``, like any id that names nothing.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path

from shared.jobs.records import JOB_ID_PATTERN
from shared.registry.versions import VERSION_PATTERN

#: The stores look ids up by exact match (``404`` for anything else, malformed or unknown).
JobIdPath = Annotated[
    str,
    Path(
        description="A job id, as `POST /train` answered it (32 lowercase hex digits).",
        json_schema_extra={"pattern": JOB_ID_PATTERN},
    ),
]
VersionPath = Annotated[
    str,
    Path(
        description="A model version: `v1`, `v2`... (no leading zeros).",
        json_schema_extra={"pattern": VERSION_PATTERN},
    ),
]


def link(
    path: str,
    method: str,
    description: str,
    parameters: dict[str, str] | None = None,
    request_body: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An OpenAPI link from a response to the operation ``method path``, with its values taken
    from the response by runtime expressions (``$response.body#/job_id``...). Clients and
    schemathesis's stateful phase follow them: train, then poll or cancel the job; upload, then
    train on the upload."""
    pointer = path.replace("~", "~0").replace("/", "~1")
    found: dict[str, Any] = {
        "operationRef": f"#/paths/{pointer}/{method.lower()}",
        "description": description,
    }
    if parameters:
        found["parameters"] = parameters
    if request_body:
        found["requestBody"] = request_body
    return found
