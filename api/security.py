"""The optional API key, as dependencies that routers and routes declare.

With ``API_KEY`` set, every endpoint that changes state declares :data:`WriteAccess` and
answers ``401`` without the key. Reading and predicting stay open unless
``API_KEY_REQUIRED_FOR_READS`` is set: the routers of those endpoints declare
:data:`ReadAccess`, which then asks for the key too. ``/healthz`` and ``/readyz`` declare
neither, so probes never need a secret.

The key is accepted as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>`` and compared
in constant time (of digests, so not even its length leaks).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException

from api.deps import SettingsDep

API_KEY_HEADER = "X-API-Key"
#: What a 401 tells the client to send (RFC 6750).
WWW_AUTHENTICATE = 'Bearer realm="runtime-v-training"'

_WHEN = (
    "Required by the endpoints that change state when the server sets `API_KEY`, and by the "
    "read and predict endpoints too when it also sets `API_KEY_REQUIRED_FOR_READS` "
    "(`/healthz` and `/readyz` never need it)."
)
bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="BearerApiKey",
    description=f"`Authorization: Bearer <API_KEY>`. {_WHEN}",
)
header_scheme = APIKeyHeader(
    name=API_KEY_HEADER,
    auto_error=False,
    scheme_name="ApiKeyHeader",
    description=f"`{API_KEY_HEADER}: <API_KEY>`, the same key. {_WHEN}",
)


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


async def require_api_key(
    request: Request,
    settings: SettingsDep,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
    _header: Annotated[str | None, Security(header_scheme)],
) -> None:
    """For endpoints that change state. The two ``Security`` parameters only document the
    schemes in OpenAPI; the check reads the headers itself, as :func:`require_read_key` does."""
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
