"""The container healthchecks, against a real HTTP server and a real private Redis (the
heartbeat path is also run against real workers in tests/deploy)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import redis

from cli import healthcheck
from cli.stack import LocalStack, free_port
from shared.presence import WorkerPresence
from shared.settings import get_settings
from tests.integration.conftest import require_redis_server


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """The probes read settings from the environment, once per process: reset around each."""
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def serve(status: int) -> tuple[ThreadingHTTPServer, int]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status if self.path == "/healthz" else 404)
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_the_api_probe_asks_healthz_on_the_configured_port(
    settings_env: pytest.MonkeyPatch, status: int, healthy: bool
) -> None:
    server, port = serve(status)
    try:
        settings_env.setenv("PORT", str(port))
        assert (healthcheck.main(["api"]) == 0) is healthy
    finally:
        server.shutdown()


def test_the_api_probe_fails_when_nothing_listens(settings_env: pytest.MonkeyPatch) -> None:
    settings_env.setenv("PORT", str(free_port()))
    assert healthcheck.check_api() is not None


def test_node_names_expand_like_celery() -> None:
    assert healthcheck.node_name("training@%h") == f"training@{socket.gethostname()}"


@pytest.mark.integration
def test_the_worker_probe_needs_this_workers_own_presence(
    settings_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    require_redis_server()
    stack = LocalStack(models_dir=tmp_path, data_dir=tmp_path)  # only its private Redis
    try:
        url = stack.start_redis()
        settings_env.setenv("REDIS_URL", url)
        assert "no fresh announcement" in (
            healthcheck.check_worker("training", "training@me") or ""
        )
        client = redis.Redis.from_url(url)
        WorkerPresence(client, prefix=get_settings().redis_prefix).announce(
            "training", "training@me"
        )
        client.close()
        assert healthcheck.check_worker("training", "training@me") is None
        assert healthcheck.check_worker("prediction", "training@me") is not None
    finally:
        stack.stop()
    assert "Redis is unavailable" in (healthcheck.check_worker("training", "training@me") or "")
