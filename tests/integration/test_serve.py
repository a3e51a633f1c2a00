"""`make run` is `rvt serve`: the whole stack from one command, and nothing left after Ctrl-C."""

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pytest

from cli.stack import free_port
from tests.integration.conftest import FAST_ENV, require_redis_server, wait_until

pytestmark = pytest.mark.integration

RVT = str(Path(sys.executable).parent / "rvt")


def processes_with(marker: str) -> list[int]:
    """Pids whose environment mentions ``marker`` (the test's own folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def private_redis_servers(parent: int) -> set[int]:
    """The redis-servers ``parent`` started. redis-server wipes its environment, so it is found
    by the folder the stack runs it in, and by its parent: never another session's."""
    found = set()
    prefix = str(Path(tempfile.gettempdir()) / "rvt-redis-")
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if ppid == parent and os.readlink(entry / "cwd").startswith(prefix):
                    found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """Still a running private redis-server (a zombie counts as gone, and so does a process that
    reused the pid: it runs elsewhere)."""
    prefix = str(Path(tempfile.gettempdir()) / "rvt-redis-")
    try:
        running = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        return running and os.readlink(f"/proc/{pid}/cwd").startswith(prefix)
    except (OSError, IndexError):
        return False


@pytest.mark.parametrize("stop_with", [signal.SIGINT, signal.SIGHUP], ids=["ctrl-c", "hangup"])
def test_serve_runs_everything_and_ctrl_c_leaves_nothing(tmp_path: Path, stop_with: int) -> None:
    require_redis_server()
    port = free_port()
    redis_servers: set[int] = set()
    env = (
        {key: value for key, value in os.environ.items() if key != "REDIS_URL"}
        | FAST_ENV
        | {
            "MODELS_DIR": str(tmp_path / "models"),
            "DATA_DIR": str(tmp_path / "data"),
            "PORT": str(port),
            "DEFAULT_DATASET_ROWS": "5000",
        }
    )
    serve = subprocess.Popen(
        [RVT, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:

            def ready() -> bool:
                try:
                    return http.get("/readyz").status_code == 200
                except httpx.HTTPError:
                    return False

            wait_until(ready, 90, 0.2, "rvt serve to be ready")
            # a private Redis, two workers and the API: all started by this one command
            assert len(processes_with(str(tmp_path))) >= 4
            redis_servers = private_redis_servers(serve.pid)
            assert len(redis_servers) == 1, redis_servers
        serve.send_signal(stop_with)
        serve.wait(60)
        assert serve.returncode is not None
        wait_until(lambda: not processes_with(str(tmp_path)), 30, 0.2, "every process to stop")
        wait_until(
            lambda: not any(alive(pid) for pid in redis_servers), 30, 0.2, "its Redis to stop"
        )
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait(10)
        strays = set(processes_with(str(tmp_path))) | {p for p in redis_servers if alive(p)}
        for pid in strays:  # never leave a stray process behind (and touch no one else's)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert "private Redis" in (serve.stderr.read() if serve.stderr else "")
