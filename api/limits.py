"""The request body limit (``MAX_JSON_BODY_BYTES``) for every endpoint but uploads.

A body over the limit is answered ``413`` in the one error shape. When ``Content-Length``
says so, that happens at the endpoint's first attempt to read, before a byte of the body is
taken; a body sent without a length (chunked) is counted as it arrives and refused the moment
it crosses the limit. Endpoints that stream a body under a limit of their own (the dataset
upload, ``MAX_UPLOAD_BYTES``) are marked with :func:`own_body_limit` and left alone.

The check happens when the body is read, not when the request arrives, because only then is
the endpoint known (routing has run); an endpoint that never reads its body is never refused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_MARK = "_rvt_own_body_limit"
F = TypeVar("F", bound=Callable[..., object])


def own_body_limit(endpoint: F) -> F:
    """Mark an endpoint that enforces a body limit of its own while it streams."""
    setattr(endpoint, _MARK, True)
    return endpoint


class BodyTooLargeError(HTTPException):
    """Raised from ``receive``: FastAPI lets HTTP exceptions from body reading through to the
    app's handlers, which answer it in the error shape (see :mod:`api.errors`)."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(
            413, detail=f"the request body is larger than the limit of {max_bytes} bytes"
        )
        self.max_bytes = max_bytes


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            return int(value) if value.isdigit() else None
    return None


class BodyLimitMiddleware:
    """Pure ASGI; on /predict it costs a header scan and one wrapped ``receive``."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        declared = _content_length(scope)
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            if getattr(scope.get("endpoint"), _MARK, False):
                return await receive()
            if declared is not None and declared > limit:
                raise BodyTooLargeError(limit)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLargeError(limit)
            return message

        await self.app(scope, limited_receive, send)
