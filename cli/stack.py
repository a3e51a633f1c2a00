"""The whole service on one machine, as real processes: a private Redis (unless one is given),
a training worker, a prediction worker and the API (``API_WORKERS`` processes).

``make run`` uses it, and so do the integration tests and the benchmarks, so that what they
exercise is exactly what a user runs. It imports neither FastAPI nor Celery: it starts them by
their command lines, the same ones ``docker-compose.yml`` uses. Every process gets its own
process group, so stopping the stack also stops the workers' pool children.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from shared.storage.location import S3Location

PYTHON = sys.executable


def api_command(host: str, port: int) -> list[str]:
    """The API's launcher: uvicorn with ``API_WORKERS`` processes and metrics summed across
    them (:mod:`api.server`)."""
    return [PYTHON, "-m", "api.server", "--host", host, "--port", str(port)]


def worker_command(queue: str, concurrency: int = 1) -> list[str]:
    """A prediction worker runs its tasks in its main process (``--pool solo``): a prediction
    takes microseconds, and a prefork pool would add a pipe round trip to a child per task
    (scale out with more workers). Trainings run in a prefork child, which can be niced,
    time-limited and lost without losing the worker."""
    pool = ["--pool", "solo"] if queue == "prediction" else ["-c", str(concurrency)]
    return [
        PYTHON, "-m", "celery", "-A", "worker", "worker", "-Q", queue, *pool,
        "-n", f"{queue}-{uuid.uuid4().hex[:8]}@%h", "--loglevel", "INFO", "--without-gossip",
        "--without-mingle",
    ]  # fmt: skip


def redis_command(port: int, workdir: Path) -> list[str]:
    return [
        "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
        "--appendonly", "no", "--dir", str(workdir), "--loglevel", "warning",
    ]  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class StackError(RuntimeError):
    pass


@dataclass
class ManagedProcess:
    name: str
    command: list[str]
    popen: subprocess.Popen[bytes]
    log_path: Path | None

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)

    def stop(self, timeout: float = 10.0) -> None:
        if self.alive():
            # the main process only: it stops its own pool children in order
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.popen.wait(5)
        # pool children may outlive a killed main process: end the whole group
        self.signal(signal.SIGKILL)

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class LocalStack:
    """Start with :meth:`start`; always :meth:`stop` (it is also a context manager)."""

    models_dir: Path | S3Location
    data_dir: Path | S3Location
    redis_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 0
    log_dir: Path | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    processes: dict[str, ManagedProcess] = field(default_factory=dict)
    cwd: Path = field(default_factory=lambda: Path(__file__).resolve().parent.parent)
    _temp_dirs: list[Path] = field(default_factory=list)

    def __enter__(self) -> LocalStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def process_env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "MODELS_DIR": str(self.models_dir),
            "DATA_DIR": str(self.data_dir),
            "PYTHONUNBUFFERED": "1",
            **self.env,
        }
        if self.redis_url:
            env["REDIS_URL"] = self.redis_url
        env["PORT"] = str(self.port)
        return env

    def launch(
        self, name: str, command: list[str], env: Mapping[str, str] | None = None
    ) -> ManagedProcess:
        log_path = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log_path = self.log_dir / f"{name}.log"
            output = log_path.open("ab")
        else:
            output = None
        popen = subprocess.Popen(
            command,
            cwd=self.cwd,
            env={**self.process_env(), **(env or {})},
            stdout=output,
            stderr=subprocess.STDOUT if output is not None else None,
            start_new_session=True,
        )
        if output is not None:
            output.close()
        process = ManagedProcess(name, command, popen, log_path)
        self.processes[name] = process
        return process

    def start_redis(self) -> str:
        if shutil.which("redis-server") is None:
            raise StackError(
                "no redis-server on PATH: install it (Debian/Ubuntu: apt-get install redis-server) "
                "or set REDIS_URL to a Redis you run"
            )
        port = free_port()
        workdir = Path(tempfile.mkdtemp(prefix="rvt-redis-"))
        self._temp_dirs.append(workdir)
        self.launch("redis", redis_command(port, workdir))
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        wait_for_redis(port, timeout=10, process=self.processes["redis"])
        return self.redis_url

    def start_worker(
        self, queue: str, concurrency: int = 1, name: str | None = None
    ) -> ManagedProcess:
        return self.launch(name or f"worker-{queue}", worker_command(queue, concurrency))

    def start_api(self) -> ManagedProcess:
        """The API, with the metrics files of several processes in a folder of the stack's own
        (unless the environment names one), so that nothing is left behind even if it is
        killed."""
        if not self.port:
            self.port = free_port()
        env: dict[str, str] = {}
        if "PROMETHEUS_MULTIPROC_DIR" not in self.process_env():
            metrics = Path(tempfile.mkdtemp(prefix="rvt-metrics-"))
            self._temp_dirs.append(metrics)
            env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)
        return self.launch("api", api_command(self.host, self.port), env)

    def start(self, timeout: float = 60.0) -> LocalStack:
        """Everything, in order, and wait until ``/readyz`` says the stack is ready."""
        if not self.redis_url:
            self.start_redis()
        self.start_worker("training")
        self.start_worker("prediction")
        self.start_api()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            for process in self.processes.values():
                if not process.alive():
                    raise StackError(f"{process.name} exited early:\n{process.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/readyz", timeout=2) as response:
                    if response.status == 200:
                        return
            except urllib.error.HTTPError as exc:
                last = exc.read().decode(errors="replace")
            except (urllib.error.URLError, OSError) as exc:
                last = str(exc)
            time.sleep(0.2)
        raise StackError(f"the stack was not ready within {timeout:.0f} s: {last}")

    def stop(self) -> None:
        # the API first (no new work), then workers, Redis last
        order = sorted(self.processes.values(), key=lambda p: p.name == "redis")
        for process in order:
            process.stop()
        self.processes.clear()
        for path in self._temp_dirs:
            shutil.rmtree(path, ignore_errors=True)
        self._temp_dirs.clear()


def wait_for_redis(port: int, timeout: float, process: ManagedProcess | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and not process.alive():
            raise StackError(f"redis-server exited early:\n{process.log_tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(64).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise StackError(f"redis-server did not answer on port {port} within {timeout:.0f} s")
