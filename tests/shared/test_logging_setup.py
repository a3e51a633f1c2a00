"""One JSON object per line (or text on a terminal), with request and job ids from context."""

from __future__ import annotations

import io
import json
import logging
import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from shared.logging_setup import configure_logging, job_id_var, request_id_var


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Every test leaves the process's logging as it found it."""
    root = logging.getLogger()
    names = ("uvicorn", "uvicorn.error", "uvicorn.access")
    saved: dict[str, Any] = {
        name: (logging.getLogger(name).handlers[:], logging.getLogger(name).propagate)
        for name in names
    }
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, (old_handlers, propagate) in saved.items():
        logging.getLogger(name).handlers[:] = old_handlers
        logging.getLogger(name).propagate = propagate
    logging.captureWarnings(False)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_each_record_is_one_json_object_on_one_line() -> None:
    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    log = logging.getLogger("rvt.test")
    log.info("two\nlines and a %s", "value", extra={"queues": ["training"], "rows": 3})
    log.debug("below the level")
    [line] = lines(out)
    assert line["message"] == "two\nlines and a value"
    assert line["level"] == "INFO" and line["logger"] == "rvt.test"
    assert line["ts"].endswith("Z")
    assert line["queues"] == ["training"] and line["rows"] == 3
    assert len(out.getvalue().splitlines()) == 1


def test_a_traceback_stays_inside_the_line() -> None:
    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    try:
        raise ValueError("bad thing")
    except ValueError:
        logging.getLogger("rvt.test").exception("it failed")
    [line] = lines(out)
    assert "Traceback" in line["exc_info"] and "ValueError: bad thing" in line["exc_info"]


def test_request_and_job_ids_come_from_the_context() -> None:
    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    log = logging.getLogger("rvt.test")
    request, job = request_id_var.set("req-1"), job_id_var.set("job-1")
    try:
        log.info("in context")
        log.info("explicit wins", extra={"job_id": "job-2"})
    finally:
        request_id_var.reset(request)
        job_id_var.reset(job)
    log.info("outside")
    first, second, third = lines(out)
    assert (first["request_id"], first["job_id"]) == ("req-1", "job-1")
    assert second["job_id"] == "job-2"
    assert "request_id" not in third and "job_id" not in third


def test_text_for_people() -> None:
    out = io.StringIO()
    configure_logging("INFO", "text", stream=out)
    token = job_id_var.set("job-9")
    try:
        logging.getLogger("rvt.test").warning("training %s", "started")
    finally:
        job_id_var.reset(token)
    text = out.getvalue()
    assert "WARNING" in text and "rvt.test: training started [job_id=job-9]" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


def test_auto_is_text_on_a_terminal_and_json_elsewhere() -> None:
    pipe = io.StringIO()
    configure_logging("INFO", "auto", stream=pipe)
    logging.getLogger("rvt.test").info("to a pipe")
    assert lines(pipe)[0]["message"] == "to a pipe"
    main, secondary = os.openpty()
    with os.fdopen(secondary, "w") as terminal:
        configure_logging("INFO", "auto", stream=terminal)  # type: ignore[arg-type]
        logging.getLogger("rvt.test").info("to a terminal")
        terminal.flush()
        written = os.read(main, 4096).decode()
    os.close(main)
    assert "rvt.test: to a terminal" in written and not written.lstrip().startswith("{")


def test_configuring_again_replaces_only_its_own_handler() -> None:
    foreign = logging.NullHandler()
    logging.getLogger().addHandler(foreign)
    first, second = io.StringIO(), io.StringIO()
    configure_logging("INFO", "json", stream=first)
    configure_logging("INFO", "json", stream=second)
    logging.getLogger("rvt.test").info("once")
    assert first.getvalue() == "" and len(lines(second)) == 1
    assert foreign in logging.getLogger().handlers


def test_the_level_comes_from_the_setting() -> None:
    out = io.StringIO()
    configure_logging("warning", "json", stream=out)
    logging.getLogger("rvt.test").info("quiet")
    logging.getLogger("rvt.test").warning("loud")
    assert [line["message"] for line in lines(out)] == ["loud"]


@pytest.mark.parametrize(("level", "fmt"), [("LOUD", "json"), ("INFO", "xml")])
def test_unknown_levels_and_formats_are_refused(level: str, fmt: str) -> None:
    with pytest.raises(ValueError):
        configure_logging(level, fmt, stream=io.StringIO())


def test_uvicorns_loggers_are_folded_in_and_its_access_log_stays_off() -> None:
    logging.getLogger("uvicorn.error").addHandler(logging.StreamHandler(io.StringIO()))
    logging.getLogger("uvicorn.access").addHandler(logging.StreamHandler(io.StringIO()))
    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    logging.getLogger("uvicorn.error").info("Started server process", extra={"color_message": "x"})
    logging.getLogger("uvicorn.access").info("GET / 200")
    [line] = lines(out)
    assert line["logger"] == "uvicorn.error" and "color_message" not in line
    assert not logging.getLogger("uvicorn.access").hasHandlers()


def test_the_default_stream_is_whatever_stderr_is_when_writing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    configure_logging("INFO", "json")
    later = io.StringIO()
    monkeypatch.setattr(sys, "stderr", later)
    logging.getLogger("rvt.test").info("after a swap")
    assert lines(later)[0]["message"] == "after a swap"


def test_warnings_become_log_lines() -> None:
    import warnings

    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        logging.captureWarnings(True)
        warnings.warn("careful", UserWarning, stacklevel=1)
    [line] = lines(out)
    assert line["logger"] == "py.warnings" and "careful" in line["message"]
