"""Request ids: every response carries one, every error body repeats it, and every log line
written while the request is handled names it (the formatters of :mod:`shared.logging_setup`
read :data:`request_id_var`), so a user's report can be matched with the server's logs."""

from __future__ import annotations

import re
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import internal_error_response
from shared.logging_setup import request_id_var

__all__ = ["REQUEST_ID_HEADER", "RequestIdMiddleware", "request_id_var"]

REQUEST_ID_HEADER = "X-Request-ID"
_HEADER_KEY = REQUEST_ID_HEADER.lower().encode("latin-1")
#: An incoming id is kept only if it is short and plain: it is echoed into headers and logs.
_SANE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def _incoming_id(scope: Scope) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == _HEADER_KEY:
            text = value.decode("latin-1")
            return text if _SANE_ID.fullmatch(text) else None
    return None


class RequestIdMiddleware:
    """Pure ASGI (not ``BaseHTTPMiddleware``), so it adds nothing measurable to /predict.

    It is also the last resort for exceptions no handler claimed: it sits inside Starlette's
    ``ServerErrorMiddleware``, so answering here keeps the request id on the 500 and logs the
    failure once, with that id.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_id(scope) or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            if started:  # too late for a clean answer; let the server close the connection
                raise
            response = internal_error_response(request_id, exc, scope)
            await response(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)
