"""``python -m api.server``: the API as ``API_WORKERS`` uvicorn processes sharing one port, with
metrics that count the requests of every one of them.

Each process keeps its counters in memory, so a scrape answered by one process would see only
its share. prometheus_client's multiprocess mode keeps them in files instead, one per process
and kind, in ``PROMETHEUS_MULTIPROC_DIR``, and ``GET /metrics`` sums the files of every process
(:mod:`api.metrics`). The mode must be chosen before prometheus_client is first imported, so
it is set here, before uvicorn starts (or spawns) the processes that import the app; and the
folder must start empty, or files of an earlier run would be counted again (a restarted process
can even reuse an old pid, and so an old file). Hence this launcher, rather than ``uvicorn
--workers`` alone: it empties the configured folder, or makes a temporary one and removes it at
exit. With one process it stays out of the way: the files cost each request about as much again
as the in-memory counters (measured: some 10 us more for a request's counter, histogram and
prediction count), for nothing to sum. Everything else (one reply subscription per process, job
records and idempotency keys in Redis) needs nothing from it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

import uvicorn

from shared.logging_setup import configure_logging
from shared.settings import Settings, get_settings

__all__ = ["MULTIPROC_ENV", "build_parser", "main", "prepare_metrics_folder"]

#: prometheus_client reads its folder from this variable, in every process.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_metrics_folder(configured: Path | None) -> tuple[Path, bool]:
    """An empty folder for the metrics files, and whether it is temporary (to remove at exit).
    Only the files prometheus_client writes (``*.db``) are removed from a configured folder."""
    if configured is None:
        return Path(tempfile.mkdtemp(prefix="rvt-metrics-")), True
    configured.mkdir(parents=True, exist_ok=True)
    for stale in configured.glob("*.db"):
        stale.unlink(missing_ok=True)
    return configured, False


def build_parser(settings: Settings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m api.server", description=__doc__)
    parser.add_argument("--host", default=settings.host, help="default: HOST")
    parser.add_argument("--port", type=int, default=settings.port, help="default: PORT")
    parser.add_argument(
        "--workers", type=int, default=settings.api_workers, help="default: API_WORKERS"
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    settings = get_settings()
    parser = build_parser(settings)
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    configure_logging(settings.log_level, settings.log_format)
    folder, temporary = None, False
    if args.workers > 1:
        folder, temporary = prepare_metrics_folder(settings.prometheus_multiproc_dir)
        os.environ[MULTIPROC_ENV] = str(folder)
    else:  # one process counts everything itself, without the files' cost per request
        os.environ.pop(MULTIPROC_ENV, None)
    try:
        uvicorn.run(
            "api.main:app",
            host=args.host,
            port=args.port,
            workers=args.workers,
            loop="uvloop",
            http="httptools",
            access_log=False,
            log_config=None,  # ours (configured above, and by each process as it imports the app)
        )
    finally:
        if folder is not None and temporary:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
