"""`rvt` run in the test's own process, for checks that need the command but not a process of
its own: a real ``rvt`` process spends seconds importing before it does anything, this costs
milliseconds. It is the same command function, options, error handling and exit codes (typer's
test runner). What a real process would also print on stderr is added to stderr here: Python
warnings, and log records of WARNING and above (``rvt`` configures no logging, so Python
prints those on stderr). Each kind of check keeps at least one real process elsewhere.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

from typer.testing import CliRunner

from cli.main import app
from shared.settings import get_settings

RVT = str(Path(sys.executable).parent / "rvt")


@dataclass(frozen=True)
class Outcome:
    """What a command did: its exit code and what it printed."""

    exit_code: int
    stdout: str
    stderr: str


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def rvt_here(args: list[str], env: dict[str, str]) -> Outcome:
    """``rvt *args`` in this process, with ``env`` added to the environment. Settings are read
    once per process, so they are read afresh for this run and forgotten after it."""
    records = _Records()
    root = logging.getLogger()
    root.addHandler(records)
    get_settings.cache_clear()
    try:
        with warnings.catch_warnings(record=True) as warned:
            warnings.simplefilter("always")
            result = CliRunner().invoke(app, args, env=env, catch_exceptions=False)
    finally:
        get_settings.cache_clear()
        root.removeHandler(records)
    extra = [str(w.message) for w in warned] + records.lines
    stderr = result.stderr + "".join(f"{line}\n" for line in extra)
    return Outcome(result.exit_code, result.stdout, stderr)


def rvt_process(args: list[str], env: dict[str, str], timeout: float = 600) -> Outcome:
    """``rvt *args`` as a real process, with ``env`` added to the environment."""
    result = subprocess.run(
        [RVT, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=timeout,
        check=False,
    )
    return Outcome(result.returncode, result.stdout, result.stderr)
