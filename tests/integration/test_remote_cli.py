"""`rvt api ...` and `rvt demo` as a user runs them: the real command, in its own process, against
a real API on a free port that sets ``API_KEY`` the way a deployment does.

Most tests share an API with Redis but no worker: every training job stays ``queued``, which is
what a client watching a job must cope with, and nothing trains. One test runs the whole demo on
a complete stack that also closes reads (``API_KEY_REQUIRED_FOR_READS``).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cli.stack import LocalStack
from tests.conftest import MakeDataset
from tests.integration.conftest import FAST_ENV, make_stack, require_redis_server, wait_until

pytestmark = pytest.mark.integration

RVT = str(Path(sys.executable).parent / "rvt")
KEY = f"test-key-{secrets.token_hex(8)}"
#: Settings the CLI must not inherit from the machine or the developer's shell.
CLEARED = ("API_KEY", "API_URL", "API_KEY_REQUIRED_FOR_READS", "DATA_DIR", "MODELS_DIR")


def rvt(
    *args: str, url: str, workdir: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """The command as a user runs it, from a folder of its own: its own DATA_DIR, and no
    ``.env`` but the one a test writes there."""
    base = {k: v for k, v in os.environ.items() if k not in CLEARED}
    full_env = {
        **base,
        "API_URL": url,
        "DATA_DIR": str(workdir / "cli-data"),
        "MODELS_DIR": str(workdir / "cli-models"),
        **(env or {}),
    }
    return subprocess.run(
        [RVT, *args],
        cwd=workdir,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def assert_key_not_shown(result: subprocess.CompletedProcess[str], key: str = KEY) -> None:
    assert key not in result.stdout and key not in result.stderr


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.fixture(scope="module")
def api_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """Redis and the API with ``API_KEY`` set, and no worker."""
    require_redis_server()
    tmp = tmp_path_factory.mktemp("api-only")
    stack = LocalStack(
        models_dir=tmp / "models",
        data_dir=tmp / "server-data",
        log_dir=tmp / "logs",
        env={**FAST_ENV, "API_KEY": KEY},
    )
    try:
        stack.start_redis()
        stack.start_api()

        def healthy() -> bool:
            try:
                return httpx.get(f"{stack.base_url}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, 60, interval=0.2, message="the API to answer /healthz")
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def admin(api_only: LocalStack) -> Iterator[httpx.Client]:
    """The test's own view of the server, with the key."""
    with httpx.Client(base_url=api_only.base_url, headers={"X-API-Key": KEY}, timeout=10) as http:
        yield http


def queued_job_id(stderr: str) -> str:
    match = re.search(r"job (\S+) queued", stderr)
    assert match, stderr
    return match.group(1)


def test_every_api_command_sends_the_key_from_the_setting(
    api_only: LocalStack, admin: httpx.Client, tmp_path: Path
) -> None:
    env = {"API_KEY": KEY}
    train = rvt("api", "train", "--no-wait", url=api_only.base_url, workdir=tmp_path, env=env)
    assert train.returncode == 0, train.stderr
    job_id = json.loads(train.stdout)["job_id"]
    jobs = rvt("api", "jobs", url=api_only.base_url, workdir=tmp_path, env=env)
    assert jobs.returncode == 0, jobs.stderr
    assert job_id in jobs.stdout
    models = rvt("api", "models", url=api_only.base_url, workdir=tmp_path, env=env)
    assert models.returncode == 0, models.stderr
    assert json.loads(models.stdout)["production"] is None
    cancel = rvt("api", "cancel", job_id, url=api_only.base_url, workdir=tmp_path, env=env)
    assert cancel.returncode == 0, cancel.stderr
    assert admin.get(f"/jobs/{job_id}").json()["status"] == "cancelled"
    for result in (train, jobs, models, cancel):
        assert_key_not_shown(result)


def test_upload_and_list_datasets(
    api_only: LocalStack, tmp_path: Path, make_dataset: MakeDataset
) -> None:
    env = {"API_KEY": KEY}
    source = make_dataset(3_000, 11)
    uploaded = rvt("api", "upload", str(source), url=api_only.base_url, workdir=tmp_path, env=env)
    assert uploaded.returncode == 0, uploaded.stderr
    summary = json.loads(uploaded.stdout)
    assert summary["rows"] == 3_000 and summary["name"].startswith(source.stem)
    assert (api_only.data_dir / summary["name"]).read_bytes() == source.read_bytes()
    listed = rvt("api", "datasets", url=api_only.base_url, workdir=tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr
    assert summary["name"] in listed.stdout


def test_the_key_can_come_from_a_dotenv_file(api_only: LocalStack, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"API_KEY={KEY}\n")
    train = rvt("api", "train", "--no-wait", url=api_only.base_url, workdir=tmp_path)
    assert train.returncode == 0, train.stderr
    rvt(
        "api", "cancel", json.loads(train.stdout)["job_id"], url=api_only.base_url, workdir=tmp_path
    )


def test_the_key_option_wins_over_the_setting(api_only: LocalStack, tmp_path: Path) -> None:
    wrong = {"API_KEY": "not-the-key"}
    refused = rvt("api", "train", "--no-wait", url=api_only.base_url, workdir=tmp_path, env=wrong)
    assert refused.returncode == 2
    assert "401" in one_line(refused.stderr) and "not valid" in refused.stderr
    assert_key_not_shown(refused, "not-the-key")
    accepted = rvt(
        "api", "train", "--no-wait", "--api-key", KEY,
        url=api_only.base_url, workdir=tmp_path, env=wrong,
    )  # fmt: skip
    assert accepted.returncode == 0, accepted.stderr
    assert_key_not_shown(accepted)
    job_id = json.loads(accepted.stdout)["job_id"]
    rvt("api", "cancel", job_id, "--api-key", KEY, url=api_only.base_url, workdir=tmp_path)


def test_without_a_key_a_write_is_one_line_that_says_what_to_set(
    api_only: LocalStack, tmp_path: Path
) -> None:
    refused = rvt("api", "train", "--no-wait", url=api_only.base_url, workdir=tmp_path)
    assert refused.returncode == 2
    line = one_line(refused.stderr)
    assert "401" in line and "API_KEY" in line and "--api-key" in line


def test_train_stops_watching_a_job_that_never_ends(
    api_only: LocalStack, admin: httpx.Client, tmp_path: Path
) -> None:
    started = time.monotonic()
    result = rvt(
        "api", "train", "--timeout", "1",
        url=api_only.base_url, workdir=tmp_path, env={"API_KEY": KEY}, timeout=90,
    )  # fmt: skip
    assert time.monotonic() - started < 60  # bounded, generously: no claim about speed
    assert result.returncode == 3, (result.stdout, result.stderr)
    job_id = queued_job_id(result.stderr)
    last = result.stderr.strip().splitlines()[-1]
    assert job_id in last and "still queued" in last and "rvt api jobs" in last
    # giving up watching is not cancelling: the job is still there, still queued
    assert admin.get(f"/jobs/{job_id}").json()["status"] == "queued"
    admin.post(f"/jobs/{job_id}/cancel")


def test_demo_uploads_its_dataset_to_the_server_once(
    api_only: LocalStack, admin: httpx.Client, tmp_path: Path
) -> None:
    """The demo's dataset goes through POST /datasets, never into the CLI's own DATA_DIR; a
    second run finds it on the server. (No worker here: the demo stops at its first wait.)"""
    assert api_only.data_dir != tmp_path / "cli-data"
    before = {d["name"] for d in admin.get("/datasets").json()["datasets"]}
    for _ in range(2):
        result = rvt(
            "demo", "--rows", "3000", "--timeout", "1",
            url=api_only.base_url, workdir=tmp_path, env={"API_KEY": KEY},
        )  # fmt: skip
        assert result.returncode == 3, (result.stdout, result.stderr)
        assert_key_not_shown(result)
        admin.post(f"/jobs/{queued_job_id(result.stderr)}/cancel")
    added = {d["name"] for d in admin.get("/datasets").json()["datasets"]} - before
    assert len(added) == 1, added
    (name,) = added
    assert name.startswith("demo_3000") and name.endswith(".csv")
    stored = api_only.data_dir / name
    assert len(stored.read_text().splitlines()) == 3001
    assert not (tmp_path / "cli-data").exists()
    assert [p.name for p in tmp_path.iterdir()] == []


def test_demo_end_to_end_with_reads_closed(tmp_path: Path) -> None:
    """The whole demo on a complete stack where every endpoint but the probes needs the key."""
    stack = make_stack(
        tmp_path / "server", env={"API_KEY": KEY, "API_KEY_REQUIRED_FOR_READS": "true"}
    )
    try:
        workdir = tmp_path / "client"
        workdir.mkdir()
        result = rvt(
            "demo", "--rows", "20000", "--timeout", "120",
            url=stack.base_url, workdir=workdir, env={"API_KEY": KEY}, timeout=240,
        )  # fmt: skip
    finally:
        stack.stop()
    assert result.returncode == 0, result.stderr
    assert_key_not_shown(result)
    assert "training off the request path" in result.stdout
    assert "job succeeded" in result.stdout
    assert "failed: 0" in result.stdout
    assert "latency p50 / p99" in result.stdout
    assert not (workdir / "cli-data").exists()
