"""Logging for every process: one line of JSON per event, or a short readable line on a
terminal.

Log shippers read one JSON object per line, so every process (the API, each worker) writes
exactly that on stderr when it is not a terminal, as in a container. On a terminal
(``rvt serve``, ``make run``) people read the lines, so they get text. ``LOG_FORMAT`` forces
either.

Lines about a request carry its ``request_id`` and lines about a job its ``job_id``, without
every call site passing them: the request-id middleware and the training task set the
context variables below, and the formatters read them (an explicit
``extra={"job_id": ...}`` wins). This module imports neither FastAPI nor Celery; the API and
the worker each call :func:`configure_logging` at start.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as _LibraryJsonFormatter

__all__ = [
    "JsonFormatter",
    "TextFormatter",
    "configure_logging",
    "job_id_var",
    "request_id_var",
]

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
job_id_var: ContextVar[str | None] = ContextVar("job_id", default=None)

#: Attributes every LogRecord has: anything else on a record came from ``extra=``.
_RECORD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", (), None)).keys()
    | {"message", "asctime", "taskName"}
)
#: Extras that only repeat the message (uvicorn's ANSI-coloured copy of it).
_NOISE = frozenset({"request_id", "job_id", "color_message"})
#: Marks the handler this module installed, so configuring twice replaces it.
_OURS = "_rvt_handler"
#: uvicorn's own loggers get handlers of their own from uvicorn: they are folded into ours.
_UVICORN_LOGGERS = ("uvicorn", "uvicorn.error")


def _context(record: logging.LogRecord) -> dict[str, Any]:
    """request_id and job_id: from ``extra=`` first, else from the context variables."""
    found: dict[str, Any] = {}
    for name, var in (("request_id", request_id_var), ("job_id", job_id_var)):
        value = record.__dict__.get(name) or var.get()
        if value:
            found[name] = value
    return found


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {
        key: value
        for key, value in record.__dict__.items()
        if key not in _RECORD_ATTRIBUTES and key not in _NOISE and not key.startswith("_")
    }


class JsonFormatter(_LibraryJsonFormatter):
    """python-json-logger's formatter, with this project's field names (``ts``, ``level``,
    ``logger``, ``message``), UTC millisecond timestamps and the ids from context."""

    def __init__(self) -> None:
        super().__init__(
            "{levelname}{name}{message}",
            style="{",
            rename_fields={"levelname": "level", "name": "logger"},
            reserved_attrs=[*RESERVED_ATTRS, *_NOISE, "taskName"],
            json_default=str,
            json_ensure_ascii=False,
        )

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        stamp = datetime.fromtimestamp(record.created, UTC)
        log_data["ts"] = stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        super().add_fields(log_data, record, message_dict)
        log_data.update(_context(record))


class TextFormatter(logging.Formatter):
    """``12:00:01.234 INFO    api.errors: message [request_id=...]``, for people."""

    def __init__(self) -> None:
        super().__init__(
            "%(asctime)s.%(msecs)03d %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"
        )

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = {**_context(record), **_extras(record)}
        if not fields:
            return line
        tail = " ".join(f"{key}={value}" for key, value in fields.items())
        head, newline, rest = line.partition("\n")  # keep a traceback below the fields
        return f"{head} [{tail}]{newline}{rest}"


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever ``sys.stderr`` is at the time, not the object it was at setup (a
    test runner swaps it; a handler holding the old one would write to a closed file)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def _level(level: str | int) -> int:
    if isinstance(level, int):
        return level
    number = logging.getLevelNamesMapping().get(level.strip().upper())
    if number is None:
        raise ValueError(f"unknown log level {level!r}: use DEBUG, INFO, WARNING or ERROR")
    return number


def configure_logging(
    level: str | int = "INFO",
    fmt: str = "auto",
    stream: TextIO | None = None,
    filters: Sequence[logging.Filter] = (),
) -> logging.Handler:
    """Send every log record of the process to one handler on the root logger.

    Safe to call again (the previous handler of this module is replaced; handlers others
    added, such as a test runner's, are left alone). ``fmt`` is ``json``, ``text`` or
    ``auto`` (text when the stream is a terminal). uvicorn's loggers are folded into the
    root; its access log stays off, since the request metrics carry the same facts.
    """
    handler: logging.Handler = _StderrHandler() if stream is None else logging.StreamHandler(stream)
    target = stream if stream is not None else sys.stderr
    if fmt == "auto":
        fmt = "text" if getattr(target, "isatty", lambda: False)() else "json"
    if fmt not in ("json", "text"):
        raise ValueError(f"unknown log format {fmt!r}: use json, text or auto")
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    for log_filter in filters:
        handler.addFilter(log_filter)
    setattr(handler, _OURS, True)

    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _OURS, False)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(_level(level))

    for name in _UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(logging.NOTSET)  # the root's level decides, as for every logger
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False
    logging.captureWarnings(True)
    return handler
