"""`rvt api compare A B` asks the API's comparison route, with the versions quoted as path
segments, and prints the answer as JSON."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cli.remote import api_compare

ANSWER = {"difference": "b - a", "disagreement": {"combinations": 3, "total": 95040}}


@pytest.fixture
def server() -> Iterator[tuple[str, list[str]]]:
    """A tiny API on a free port: every GET answers ANSWER; the paths asked are recorded."""
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            body = json.dumps(ANSWER).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", asked
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_compare_asks_the_route_and_prints_json(
    server: tuple[str, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    url, asked = server
    api_compare("v1", "v2/../x", url=url, api_key=None)
    assert asked == ["/models/v1/compare/v2%2F..%2Fx"]  # a client's string stays one segment
    assert json.loads(capsys.readouterr().out) == ANSWER
