"""What every `rvt` command prints with: stdout for results, stderr for people."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import ClassVar, NoReturn, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    ProgressColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from shared.errors import DomainError

out = Console()
err = Console(stderr=True)

P = ParamSpec("P")
R = TypeVar("R")


class CommandError(Exception):
    """A failure whose message is the whole story for the user: no traceback needed."""

    exit_code: ClassVar[int] = 2


def progress_columns() -> tuple[ProgressColumn, ...]:
    """Stage, bar, percent, rows read, elapsed: the same for inline and remote trainings."""
    return (
        TextColumn("{task.description:<10}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rows]:>12,} rows"),
        TimeElapsedColumn(),
    )


def fmt(value: object) -> str:
    """A metric or field as every table shows it: 4 decimals, and null spelled out."""
    if value is None:
        return "null"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def fail(message: str, exit_code: int = 2) -> NoReturn:
    """One unwrapped line on stderr and a non-zero exit: scripts grep it, people read it."""
    sys.stderr.write(f"error: {' '.join(message.split())}\n")
    raise typer.Exit(exit_code)


def one_line_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Bad input, an unreachable or refusing API: one line on stderr, never a traceback."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except CommandError as exc:
            fail(str(exc), exc.exit_code)
        except DomainError as exc:
            fail(exc.message)
        except OSError as exc:
            fail(f"{exc.strerror or exc}: {exc.filename or ''}")

    return wrapper
