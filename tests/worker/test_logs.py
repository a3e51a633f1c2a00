"""Worker logging: Celery's own setup is replaced by ours, and its per-task lines are fitted to
the project's (job ids on training lines, no per-batch lines for predictions). A real worker's
log lines are checked in tests/deploy/test_compose_stack.py."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from celery.signals import celeryd_init, setup_logging

from shared.logging_setup import JsonFormatter, job_id_var
from shared.queues import PREDICT_TASK, TRAIN_TASK
from worker import logs, tasks
from worker.celery_app import app  # noqa: F401  (importing the app connects the receivers)


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.captureWarnings(False)


def celery_record(
    name: str, level: int = logging.INFO, logger: str = "celery.app.trace"
) -> logging.LogRecord:
    data = {"id": "f" * 32, "name": name, "args": "['x']"}
    record = logging.LogRecord(
        logger, level, __file__, 1, "Task %(name)s[%(id)s] succeeded", (data,), None
    )
    record.data = data
    return record


def test_training_task_lines_get_the_job_id_and_lose_the_raw_data() -> None:
    record = celery_record(TRAIN_TASK, logger="celery.worker.strategy")
    assert logs.CeleryTaskLines().filter(record)
    assert record.job_id == "f" * 32  # type: ignore[attr-defined]
    assert "data" not in record.__dict__
    assert record.getMessage() == f"Task {TRAIN_TASK}[{'f' * 32}] succeeded"


def test_prediction_task_info_lines_are_dropped_but_problems_kept() -> None:
    task_lines = logs.CeleryTaskLines()
    assert not task_lines.filter(celery_record(PREDICT_TASK))
    assert task_lines.filter(celery_record(PREDICT_TASK, level=logging.ERROR))


def test_other_lines_pass_untouched() -> None:
    record = logging.LogRecord(
        "shared.model.training", logging.INFO, __file__, 1, "hello", (), None
    )
    assert logs.CeleryTaskLines().filter(record)
    assert "job_id" not in record.__dict__


@pytest.mark.parametrize("signal", [celeryd_init, setup_logging])
def test_the_worker_signals_install_the_projects_handler(
    signal: object, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOG_FORMAT", "json")
    logs.get_settings.cache_clear()
    try:
        responses = signal.send(sender=None, loglevel=logging.DEBUG)  # type: ignore[attr-defined]
    finally:
        logs.get_settings.cache_clear()
    assert any(receiver == logs._configure for receiver, _ in responses)
    ours = [h for h in logging.getLogger().handlers if getattr(h, "_rvt_handler", False)]
    assert len(ours) == 1
    assert any(isinstance(f, logs.CeleryTaskLines) for f in ours[0].filters)
    logging.getLogger("celery.app.trace").handle(celery_record(TRAIN_TASK))
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["job_id"] == "f" * 32 and "data" not in line


def test_a_training_task_sets_the_job_id_for_its_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the task logs while it runs carries the job id, and nothing after it."""
    seen: list[str | None] = []
    monkeypatch.setattr(tasks, "_train", lambda job_id: seen.append(job_id_var.get()))
    tasks.train.run("a" * 32)
    assert seen == ["a" * 32] and job_id_var.get() is None
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    monkeypatch.setattr(
        tasks,
        "_train",
        lambda job_id: logging.getLogger("shared.model.training").warning("fitting"),
    )
    logger = logging.getLogger("shared.model.training")
    logger.addHandler(handler)
    try:
        tasks.train.run("b" * 32)
    finally:
        logger.removeHandler(handler)
    assert json.loads(out.getvalue())["job_id"] == "b" * 32
