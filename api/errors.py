"""Every error the API answers, in one shape::

    {"error": {"code": "...", "message": "...", "details": ..., "request_id": "..."}}

Domain errors carry their own status and code; validation, HTTP, Redis and unexpected errors
are mapped here, so no endpoint formats an error itself.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import redis.exceptions
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import Scope

from api.limits import BodyTooLargeError
from api.schemas.base import ErrorInfo, ErrorResponse
from api.schemas.predictions import FIELD_CHOICES
from shared.errors import DomainError, OverloadedError

log = logging.getLogger(__name__)

#: A request with many bad records must not answer with an error list as large as itself.
MAX_VALIDATION_DETAILS = 50
_LOCATIONS = frozenset({"body", "query", "path", "header", "cookie"})
_DESCRIPTIONS = {
    400: "Bad request.",
    401: "The API key is missing or wrong (only when the server sets `API_KEY`).",
    404: "Not found.",
    409: "Conflict with the current state.",
    413: "The request body is larger than the limit.",
    415: "Unsupported media type.",
    422: "Invalid request: `details` names each bad field (and its allowed values).",
    500: "Unexpected server error (the body carries no internals; quote the request id).",
    503: (
        "A dependency (Redis, the workers, the production model) is unavailable, or the API "
        "is overloaded (`overloaded`, with `Retry-After`)."
    ),
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route: its error statuses, all documented with the one shape."""
    return {
        status: {"model": ErrorResponse, "description": _DESCRIPTIONS.get(status, "Error.")}
        for status in statuses
    }


def request_id_of(request: Request) -> str:
    return str(getattr(request.state, "request_id", None) or "unknown")


def error_response(
    request_id: str,
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    info = ErrorInfo(code=code, message=message, details=details, request_id=request_id)
    body = ErrorResponse(error=info).model_dump(mode="json")
    return JSONResponse(body, status_code=status, headers=headers)


def internal_error_response(request_id: str, exc: BaseException, scope: Scope) -> JSONResponse:
    """Log the whole failure, answer none of it: tracebacks and messages may hold internals."""
    log.error(
        "unhandled error on %s %s (request_id=%s)",
        scope.get("method"),
        scope.get("path"),
        request_id,
        exc_info=exc,
    )
    return error_response(
        request_id,
        500,
        "internal_error",
        f"internal server error; quote request id {request_id} when reporting it",
    )


# --- handlers ---------------------------------------------------------------------------------


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    # 503s are outages worth seeing and a 500 is a defect; a shed request is neither (the
    # prediction client logs a summary of those instead of a line per refusal).
    if exc.status_code >= 500 and not isinstance(exc, OverloadedError):
        level = logging.WARNING if exc.status_code == 503 else logging.ERROR
        log.log(level, "%s: %s (request_id=%s)", exc.code, exc.message, request_id_of(request))
    headers = None
    if exc.retry_after_seconds is not None:
        headers = {"Retry-After": str(exc.retry_after_seconds)}
    return error_response(
        request_id_of(request), exc.status_code, exc.code, exc.message, exc.details, headers
    )


def _field(loc: tuple[Any, ...], error_type: str) -> tuple[str, str | None]:
    """``("body", "records", 0, "sex")`` -> ``("records.0.sex", "body")``."""
    location = str(loc[0]) if loc and loc[0] in _LOCATIONS else None
    parts = loc[1:] if location else loc
    if error_type == "json_invalid":  # its loc ends in a character offset, not a field
        parts = ()
    return ".".join(str(part) for part in parts) or (location or "request"), location


def _validation_item(error: dict[str, Any]) -> dict[str, Any]:
    loc = tuple(error.get("loc", ()))
    field, location = _field(loc, error.get("type", ""))
    item: dict[str, Any] = {
        "field": field,
        "location": location,
        "type": error.get("type"),
        "message": error.get("msg"),
    }
    value = error.get("input")
    if error.get("type") not in ("missing", "json_invalid") and (
        value is None
        or isinstance(value, (bool, int, float))
        or (isinstance(value, str) and len(value) <= 200)
    ):
        item["input"] = value
    last = next((part for part in reversed(loc) if isinstance(part, str)), None)
    if error.get("type") in ("literal_error", "enum") and last in FIELD_CHOICES:
        item["allowed"] = FIELD_CHOICES[last]
    return item


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    items = [_validation_item(error) for error in errors[:MAX_VALIDATION_DETAILS]]
    if not items:
        return error_response(request_id_of(request), 422, "validation_error", "invalid request")
    first = items[0]
    message = f"invalid request: {first['field']}: {first['message']}"
    if len(errors) > 1:
        shown = "" if len(errors) <= len(items) else f"; the first {len(items)} are listed"
        message += f" (and {len(errors) - 1} more error{'s' if len(errors) > 2 else ''}{shown})"
    return error_response(request_id_of(request), 422, "validation_error", message, items)


#: The order ``Allow`` lists methods in.
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "QUERY")
_PATH_PARAM = re.compile(r"\{([^{}]+)\}")


def _documented_methods(openapi: dict[str, Any]) -> list[tuple[re.Pattern[str], set[str]]]:
    """Each OpenAPI path as a regex (a path parameter matches what its pattern allows), with
    the methods documented there."""
    table = []
    for template, operations in openapi.get("paths", {}).items():
        patterns: dict[str, str] = {}
        for operation in operations.values():
            for parameter in operation.get("parameters", ()):
                pattern = parameter.get("schema", {}).get("pattern")
                if parameter.get("in") == "path" and pattern:
                    patterns[parameter["name"]] = pattern.removeprefix("^").removesuffix("$")
        regex, last = "", 0
        for found in _PATH_PARAM.finditer(template):
            regex += re.escape(template[last : found.start()])
            regex += f"(?:{patterns.get(found.group(1), '[^/]+')})"
            last = found.end()
        regex += re.escape(template[last:])
        table.append((re.compile(regex), {method.upper() for method in operations}))
    return table


def allowed_methods(request: Request, fallback: str | None = None) -> list[str]:
    """What ``Allow`` says for the request's path: the methods OpenAPI documents for it (all
    its operations, not only those of the route that happened to match first), else those in
    ``fallback`` (an undocumented route's own ``Allow``); and ``OPTIONS``, always answered."""
    table = getattr(request.app.state, "documented_methods", None)
    if table is None:
        table = _documented_methods(request.app.openapi())
        request.app.state.documented_methods = table
    path = request.scope["path"]
    root = request.scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    methods = {method for regex, declared in table if regex.fullmatch(path) for method in declared}
    if not methods and fallback:
        methods = {method.strip().upper() for method in fallback.split(",") if method.strip()}
    methods.add("OPTIONS")
    return sorted(methods, key=lambda m: _METHODS.index(m) if m in _METHODS else len(_METHODS))


def _unparsable_body(exc: StarletteHTTPException) -> RequestValidationError | None:
    """FastAPI answers a JSON body it cannot even decode (not UTF-8, nested past the parser's
    limit) with a bare 400; it is the same client error as any invalid JSON: a 422."""
    cause = exc.__cause__
    if exc.status_code != 400 or not isinstance(cause, (UnicodeDecodeError, RecursionError)):
        return None
    reason = "the body is not UTF-8 text" if isinstance(cause, UnicodeDecodeError) else str(cause)
    return RequestValidationError(
        [
            {
                "type": "json_invalid",
                "loc": ("body",),
                "msg": "JSON decode error",
                "input": {},
                "ctx": {"error": reason},
            }
        ]
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if (invalid := _unparsable_body(exc)) is not None:
        return await _validation_error(request, invalid)
    headers = exc.headers
    if exc.status_code == 405:
        # Starlette names the methods of the first route that matched the path only.
        allow = ", ".join(allowed_methods(request, (exc.headers or {}).get("Allow")))
        if request.method == "OPTIONS":  # the one method every path answers: with Allow
            return Response(status_code=204, headers={"Allow": allow})
        headers = {**(exc.headers or {}), "Allow": allow}
    try:
        phrase = HTTPStatus(exc.status_code).phrase
    except ValueError:
        phrase = "error"
    code = phrase.lower().replace(" ", "_").replace("-", "_")
    message = exc.detail if isinstance(exc.detail, str) else phrase
    details = None if isinstance(exc.detail, str) else exc.detail
    return error_response(
        request_id_of(request), exc.status_code, code, message, details, headers=headers
    )


async def _body_too_large(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BodyTooLargeError)
    return error_response(
        request_id_of(request),
        413,
        "body_too_large",
        str(exc.detail),
        {"max_bytes": exc.max_bytes},
    )


async def _redis_error(request: Request, exc: Exception) -> JSONResponse:
    log.warning("Redis unavailable: %s (request_id=%s)", exc, request_id_of(request))
    return error_response(
        request_id_of(request),
        503,
        "redis_unavailable",
        "Redis is unavailable: job records and the queues cannot be reached; try again shortly",
    )


async def _client_disconnect(request: Request, exc: Exception) -> JSONResponse:
    """Nobody is left to read this; answer anyway so nothing logs it as a server failure."""
    log.info("client disconnected mid-request (request_id=%s)", request_id_of(request))
    return error_response(request_id_of(request), 400, "client_disconnected", "client went away")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(BodyTooLargeError, _body_too_large)
    app.add_exception_handler(redis.exceptions.ConnectionError, _redis_error)
    app.add_exception_handler(redis.exceptions.TimeoutError, _redis_error)
    app.add_exception_handler(ClientDisconnect, _client_disconnect)
