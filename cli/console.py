"""What every `rvt` command prints with: stdout for results, stderr for people."""

from __future__ import annotations

import sys
from typing import NoReturn

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    ProgressColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

out = Console()
err = Console(stderr=True)


def progress_columns() -> tuple[ProgressColumn, ...]:
    """Stage, bar, percent, rows read, elapsed: the same for inline and remote trainings."""
    return (
        TextColumn("{task.description:<10}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rows]:>12,} rows"),
        TimeElapsedColumn(),
    )


def fail(message: str) -> NoReturn:
    """One unwrapped line on stderr and exit code 2: scripts grep it, people read it."""
    sys.stderr.write(f"error: {' '.join(message.split())}\n")
    raise typer.Exit(2)
