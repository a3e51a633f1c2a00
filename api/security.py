"""The optional API key, as dependencies that routers and routes declare, and as OpenAPI
declares it.

With ``API_KEY`` set, every endpoint that changes state declares :data:`WriteAccess` and
answers ``401`` without the key. Reading and predicting stay open unless
``API_KEY_REQUIRED_FOR_READS`` is set: the routers of those endpoints declare
:data:`ReadAccess`, which then asks for the key too (``/predict`` calls the same check itself,
marked with :func:`checks_read_key`). ``/healthz``, ``/readyz`` and ``/vocabulary`` declare
neither, so probes and the dashboard's form never need a secret.

The key is accepted as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>`` and compared
in constant time (of digests, so not even its length leaks).

OpenAPI says exactly what the server enforces (:func:`document_security`): without a key, no
security scheme and no ``401`` anywhere; with one, the two schemes, required (and the ``401``
documented) on exactly the operations that need the key.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal, TypeVar

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from api.deps import SettingsDep
from shared.settings import Settings

API_KEY_HEADER = "X-API-Key"
#: What a 401 tells the client to send (RFC 6750).
WWW_AUTHENTICATE = 'Bearer realm="runtime-v-training"'

Access = Literal["write", "read"]
F = TypeVar("F", bound=Callable[..., object])
_READ_KEY_MARK = "_rvt_checks_read_key"

_WHEN = (
    "Required by the endpoints that change state, and by the read and predict endpoints too "
    "when the server also sets `API_KEY_REQUIRED_FOR_READS` (`/healthz` and `/readyz` never "
    "need it)."
)
#: ``components.securitySchemes``, when the server has a key.
SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "BearerApiKey": {
        "type": "http",
        "scheme": "bearer",
        "description": f"`Authorization: Bearer <API_KEY>`. {_WHEN}",
    },
    "ApiKeyHeader": {
        "type": "apiKey",
        "in": "header",
        "name": API_KEY_HEADER,
        "description": f"`{API_KEY_HEADER}: <API_KEY>`, the same key. {_WHEN}",
    },
}
#: Either scheme will do.
SECURITY_REQUIREMENT: list[dict[str, list[str]]] = [{name: []} for name in SECURITY_SCHEMES]
UNAUTHORIZED_RESPONSE: dict[str, Any] = {
    "description": "The API key is missing or wrong.",
    "headers": {
        "WWW-Authenticate": {
            "description": "What to send: `Bearer` (RFC 6750).",
            "schema": {"type": "string"},
        }
    },
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
}


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8")).digest()


def _check(expected: str, presented: str | None) -> None:
    if presented is None:
        raise HTTPException(
            401,
            detail=(
                "this endpoint needs the API key: send `Authorization: Bearer <key>` "
                f"or `{API_KEY_HEADER}: <key>`"
            ),
            headers={"WWW-Authenticate": WWW_AUTHENTICATE},
        )
    if not hmac.compare_digest(_digest(presented), _digest(expected)):
        raise HTTPException(
            401,
            detail="the API key is not valid",
            headers={"WWW-Authenticate": f'{WWW_AUTHENTICATE}, error="invalid_token"'},
        )


def presented_key(request: Request) -> str | None:
    """The key a request carries, if any: the X-API-Key header, else a Bearer token."""
    header = request.headers.get(API_KEY_HEADER)
    if header:
        return header
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


async def require_api_key(request: Request, settings: SettingsDep) -> None:
    """For endpoints that change state."""
    expected = settings.api_key_value
    if expected is not None:
        _check(expected, presented_key(request))


async def require_read_key(request: Request, settings: SettingsDep) -> None:
    """For endpoints that only read (and /predict): open unless reads are closed too."""
    if settings.api_key_required_for_reads:
        expected = settings.api_key_value
        if expected is not None:
            _check(expected, presented_key(request))


WriteAccess = Depends(require_api_key)
ReadAccess = Depends(require_read_key)


def checks_read_key(endpoint: F) -> F:
    """Mark an endpoint that calls :func:`require_read_key` itself instead of declaring
    :data:`ReadAccess` (``/predict``), so that OpenAPI documents it as a read."""
    setattr(endpoint, _READ_KEY_MARK, True)
    return endpoint


def _calls(dependant: Dependant) -> Iterator[object]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _calls(sub)


def route_access(route: APIRoute) -> Access | None:
    """What the key guards on this route: writes, reads, or nothing."""
    calls = set(_calls(route.dependant))
    if require_api_key in calls:
        return "write"
    if require_read_key in calls or getattr(route.endpoint, _READ_KEY_MARK, False):
        return "read"
    return None


def secured(access: Access | None, settings: Settings) -> bool:
    """Whether the server asks for the key on a route with this access."""
    if settings.api_key_value is None or access is None:
        return False
    return access == "write" or settings.api_key_required_for_reads


def document_security(
    schema: dict[str, Any], routes: Iterable[APIRoute], settings: Settings
) -> dict[str, Any]:
    """Make ``schema`` (an OpenAPI document) declare the key exactly where it is enforced."""
    access = {
        (route.path_format, method.lower()): route_access(route)
        for route in routes
        for method in route.methods or ()
    }
    components = schema.setdefault("components", {})
    components.pop("securitySchemes", None)
    if settings.api_key_value is not None:
        components["securitySchemes"] = SECURITY_SCHEMES
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            operation.pop("security", None)
            responses = operation.setdefault("responses", {})
            if secured(access.get((path, method)), settings):
                operation["security"] = SECURITY_REQUIREMENT
                responses["401"] = UNAUTHORIZED_RESPONSE
            else:
                responses.pop("401", None)
    return schema
