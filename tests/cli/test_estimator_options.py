"""`rvt train` and `rvt api train` take the estimator and its parameters: inline, the domain
refuses what the estimator does not take; remote, only what was given is sent."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.cli.test_main import run
from tests.cli.test_remote import rvt
from tests.conftest import MakeDataset


def test_rvt_train_fits_gradient_boosting(tmp_path: Path, make_dataset: MakeDataset) -> None:
    data = make_dataset(20_000, 7)
    result = run(
        "train", "--data", str(data), "--json", "--estimator", "hist_gradient_boosting",
        "--max-iter", "20", "--max-depth", "3", env_dirs=tmp_path,
    )  # fmt: skip
    metadata = json.loads(result.stdout)
    assert metadata["estimator"] == "hist_gradient_boosting"
    assert (metadata["params"]["max_iter"], metadata["params"]["max_depth"]) == (20, 3)
    assert metadata["params"]["learning_rate"] == 0.1  # not given: the estimator's default
    assert metadata["metrics"]["roc_auc"] > 0.8


def test_rvt_train_refuses_a_parameter_of_the_other_estimator(tmp_path: Path) -> None:
    result = run(
        "train", "--estimator", "hist_gradient_boosting", "--C", "2", env_dirs=tmp_path,
        check=False,
    )  # fmt: skip
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1, result.stderr
    assert "params.C" in lines[0] and "hist_gradient_boosting" in lines[0]
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").glob("v*"))


@pytest.fixture
def capture() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A server that records each JSON body posted to it and answers as if the job failed."""
    bodies: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            bodies.append(json.loads(self.rfile.read(length)))
            self.reply(202, {"job_id": "j1", "status": "queued", "status_url": "/jobs/j1"})

        def do_GET(self) -> None:
            job = {"job_id": "j1", "status": "failed", "progress": 0.0, "stage": None,
                   "rows_read": 0, "error": {"code": "x", "message": "stop here"}}  # fmt: skip
            self.reply(200, job)

        def reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", bodies
    finally:
        server.shutdown()
        server.server_close()


def test_rvt_api_train_sends_the_estimator_and_only_the_given_parameters(
    capture: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    url, bodies = capture
    rvt(
        "api", "train", "--estimator", "hist_gradient_boosting", "--learning-rate", "0.2",
        "--class-weight", "none", "--no-promote", url=url, workdir=tmp_path,
    )  # fmt: skip
    assert bodies == [
        {
            "estimator": "hist_gradient_boosting",
            "promote": False,
            "params": {"learning_rate": 0.2, "class_weight": None},
        }
    ]
