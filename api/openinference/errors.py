"""Errors under ``/v2`` in the protocol's own shape: ``{"error": "<message>"}``.

The project maps its domain errors (and validation, HTTP, Redis errors) to a status and a
message in one place, :mod:`api.errors`. Rather than map them a second time, every handler it
installs is wrapped once here: under ``/v2`` the project's answer is re-shaped (same status,
same headers: ``Retry-After``, ``WWW-Authenticate``, ``Allow``; its message), and elsewhere it is
returned untouched. So a shed request is a ``503`` with ``Retry-After`` on both APIs, an unknown
version a ``404`` on both, and a path under ``/v2`` that matches nothing is a ``404`` in the
protocol's shape too. The protocol calls a bad request ``400`` where the project says ``422``.

An unexpected failure (a ``500``) is answered by :class:`api.middleware.RequestIdMiddleware`
before any handler, in the project's shape, with the request id to quote.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import orjson
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.requests import Request
from starlette.responses import Response

from api.openinference.schemas import ErrorResponse
from shared.errors import DomainError

__all__ = ["V2_PREFIX", "InvalidTensorError", "install_v2_error_shape", "is_v2", "v2_shaped"]

V2_PREFIX = "/v2"
#: The project's status -> the protocol's, where they differ.
_STATUS = {422: 400}
#: Headers of the project's answer that the re-shaped one must not copy (it has its own body).
_BODY_HEADERS = frozenset({"content-length", "content-type"})

Handler = Callable[[Request, Exception], Any]


class InvalidTensorError(DomainError):
    """A request the protocol's rules, or this model's inputs, refuse: the message names the
    tensor (or the field) and what is wrong with it."""

    status_code = 400
    code = "invalid_tensor"


def is_v2(scope: Any) -> bool:
    path = str(scope["path"])
    root = str(scope.get("root_path", ""))
    if root and path.startswith(root):
        path = path[len(root) :]
    return path == V2_PREFIX or path.startswith(V2_PREFIX + "/")


def v2_shaped(response: Response) -> Response:
    """The project's error answer ``{"error": {"code", "message", ...}}`` as the protocol's."""
    if response.status_code < 400 or not response.body:
        return response
    try:
        error = orjson.loads(response.body)["error"]
        message = error["message"] if isinstance(error, dict) else error
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return response
    headers = {k: v for k, v in response.headers.items() if k.lower() not in _BODY_HEADERS}
    return JSONResponse(
        ErrorResponse(error=str(message)).model_dump(),
        status_code=_STATUS.get(response.status_code, response.status_code),
        headers=headers,
    )


def _shaped_under_v2(handler: Handler) -> Handler:
    async def handle(request: Request, exc: Exception) -> Any:
        response = handler(request, exc)
        if inspect.isawaitable(response):
            response = await response
        if isinstance(response, Response) and is_v2(request.scope):
            return v2_shaped(response)
        return response

    return handle


def install_v2_error_shape(app: FastAPI) -> None:
    """Wrap every exception handler installed so far (call it after
    :func:`api.errors.install_error_handlers`)."""
    for exc_class, handler in list(app.exception_handlers.items()):
        app.add_exception_handler(exc_class, _shaped_under_v2(handler))
