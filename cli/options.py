"""Options more than one command takes, defined once so that they read the same everywhere."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer


class ClassWeightOption(StrEnum):
    none = "none"
    balanced = "balanced"


UrlOption = Annotated[str | None, typer.Option("--url", help="API base URL (default: API_URL).")]
ApiKeyOption = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        help="The key of an API that sets API_KEY (default: the API_KEY setting, which keeps "
        "it out of the shell history and the process list).",
        show_default=False,
    ),
]
TimeoutOption = Annotated[
    float | None,
    typer.Option(
        "--timeout",
        min=0,
        metavar="SECONDS",
        help="Stop watching a job after this long, with exit code 3; the job goes on "
        "(default: TRAINING_TIME_LIMIT_SECONDS + 60 + JOB_LEASE_SECONDS, by when any running "
        "training has ended).",
        show_default=False,
    ),
]
