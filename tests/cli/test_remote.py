"""`rvt api` against servers that misbehave in ways the real API cannot be made to: a tiny HTTP
server on a free port, and a port where nothing listens. The real API, with its key, is in
tests/integration/test_remote_cli.py."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cli.client import default_wait_seconds
from cli.demo import latency_text
from cli.remote import api_predict
from cli.stack import free_port
from shared.data.schema import FEATURE_COLUMNS
from shared.settings import Settings

RVT = str(Path(sys.executable).parent / "rvt")
SECRET = "do-not-print-me-0123"

Route = Callable[[str, str], tuple[int, str, bytes]]


def rvt(*args: str, url: str, workdir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"API_KEY", "API_URL"}}
    return subprocess.run(
        [RVT, *args, "--url", url, "--api-key", SECRET],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def serve() -> Iterator[Callable[[Route], str]]:
    """Start an HTTP server answering every request with ``route(method, path)``."""
    servers: list[ThreadingHTTPServer] = []

    def start(route: Route) -> str:
        class Handler(BaseHTTPRequestHandler):
            def answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                status, content_type, body = route(self.command, self.path)
                self.send_response(status)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_DELETE = answer

            def log_message(self, *_: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def forever_queued(method: str, path: str) -> tuple[int, str, bytes]:
    job = {
        "job_id": "j-never",
        "status": "queued",
        "progress": 0.0,
        "stage": None,
        "rows_read": 0,
    }
    if method == "POST" and path == "/train":
        return 202, "application/json", json.dumps({**job, "status_url": "/jobs/j-never"}).encode()
    return 200, "application/json", json.dumps(job).encode()


def test_train_stops_watching_after_its_timeout(
    serve: Callable[[Route], str], tmp_path: Path
) -> None:
    started = time.monotonic()
    result = rvt("api", "train", "--timeout", "1", url=serve(forever_queued), workdir=tmp_path)
    assert time.monotonic() - started < 50
    assert result.returncode == 3, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: job j-never is still queued after 1 s")
    assert "rvt api jobs" in last and "rvt api cancel j-never" in last


def test_cancel_posts_to_the_jobs_cancel_action(
    serve: Callable[[Route], str], tmp_path: Path
) -> None:
    """A cancel is an action on the job (POST /jobs/{id}/cancel), not a DELETE of it."""
    seen: list[tuple[str, str]] = []

    def cancelled(method: str, path: str) -> tuple[int, str, bytes]:
        seen.append((method, path))
        body = {"job_id": "a" * 32, "status": "cancelled", "progress": 0.0}
        return 202, "application/json", json.dumps(body).encode()

    result = rvt("api", "cancel", "a" * 32, url=serve(cancelled), workdir=tmp_path)
    assert result.returncode == 0, result.stderr
    assert seen == [("POST", f"/jobs/{'a' * 32}/cancel")]
    assert "cancel requested; job is cancelled" in result.stderr


def test_the_default_timeout_is_derived_from_the_settings() -> None:
    limit = Settings(training_time_limit_seconds=100, job_lease_seconds=5)
    assert default_wait_seconds(limit) == 100 + 60 + 5


def test_an_api_that_is_not_there_is_one_line_without_the_key(tmp_path: Path) -> None:
    result = rvt("api", "jobs", url=f"http://127.0.0.1:{free_port()}", workdir=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: cannot reach the API at http://127.0.0.1:")
    assert len(result.stderr.splitlines()) == 1
    assert SECRET not in result.stdout + result.stderr


def test_an_answer_that_is_not_the_apis_is_one_line(
    serve: Callable[[Route], str], tmp_path: Path
) -> None:
    url = serve(lambda _method, _path: (502, "text/html", b"<html>Bad Gateway</html>"))
    result = rvt("api", "models", url=url, workdir=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: 502 Bad Gateway from ")
    assert len(result.stderr.splitlines()) == 1
    ok_but_html = serve(lambda _method, _path: (200, "text/html", b"<html>hello</html>"))
    result = rvt("api", "models", url=ok_but_html, workdir=tmp_path)
    assert result.returncode == 2 and "no JSON object" in result.stderr


def test_latency_percentiles() -> None:
    millis = [n / 1000 for n in range(1, 101)]
    assert latency_text(millis) == "50.5 ms / 99.0 ms"
    assert latency_text([0.002]) == "2.0 ms / 2.0 ms"
    assert latency_text([]) == "- / -"


def test_predict_has_a_flag_for_every_feature() -> None:
    assert set(FEATURE_COLUMNS) <= set(inspect.signature(api_predict).parameters)


def test_models_follows_the_pages_or_stops_at_the_limit(
    serve: Callable[[Route], str], tmp_path: Path
) -> None:
    pages = {
        "/models": {
            "versions": [{"version": "v5"}, {"version": "v4"}],
            "next": "/models?cursor=v4",
        },
        "/models?cursor=v4": {"versions": [{"version": "v2"}], "next": None},
    }

    def route(method: str, path: str) -> tuple[int, str, bytes]:
        base = {"production": "v5", "history": [], "total": 3, "limit": 2, "next_cursor": None}
        return 200, "application/json", json.dumps({**base, **pages[path]}).encode()

    url = serve(route)
    listing = json.loads(rvt("api", "models", url=url, workdir=tmp_path).stdout)
    assert [v["version"] for v in listing["versions"]] == ["v5", "v4", "v2"]
    assert (listing["production"], listing["total"]) == ("v5", 3) and "next" not in listing
    one = json.loads(rvt("api", "models", "--limit", "1", url=url, workdir=tmp_path).stdout)
    assert [v["version"] for v in one["versions"]] == ["v5"]
