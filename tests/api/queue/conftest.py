"""Fixtures of the prediction client's tests: private Redis servers and stand-in workers, each
stopped at the end of its test (see support.py)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api.queue.support import RedisServer, StandInWorker, scored


@pytest.fixture
def redis_servers() -> Iterator[Callable[..., RedisServer]]:
    """``start(**options)``: a new server (options of :class:`RedisServer`); all are stopped at
    the end.
    Its folder is short (a unix socket path must fit in 107 bytes)."""
    servers: list[RedisServer] = []

    def start(**options: Any) -> RedisServer:
        workdir = Path(tempfile.mkdtemp(prefix="rvt-redis-"))
        server = RedisServer(workdir, **options)
        servers.append(server)
        return server.start()

    try:
        yield start
    finally:
        for server in servers:
            server.stop()
            shutil.rmtree(server.workdir, ignore_errors=True)


@pytest.fixture
def redis_server(redis_servers: Callable[..., RedisServer]) -> RedisServer:
    return redis_servers()


@pytest.fixture
def stand_in_workers() -> Iterator[Callable[..., StandInWorker]]:
    """``start(url, respond=scored)``: a running stand-in worker, stopped at the end."""
    workers: list[StandInWorker] = []

    def start(url: str, respond: Any = scored) -> StandInWorker:
        worker = StandInWorker(url, respond).start()
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()
